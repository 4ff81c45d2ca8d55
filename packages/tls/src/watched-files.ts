import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { ConfigError } from '@chiefofstate/core';

export interface WatchedFilesOptions<T> {
  /** the files, read together: a value is made from all of them at once */
  readonly paths: readonly string[];
  /** makes the value from the files' contents (in `paths` order); throws when they do not fit */
  readonly parse: (contents: readonly Buffer[]) => T;
  /** how often the files are read again, ms; 0 never. Default 10 s. */
  readonly intervalMs?: number;
  /** a new value was taken from changed files */
  readonly onChange?: (value: T) => void;
  /** changed files could not be read or parsed; the previous value stays in use */
  readonly onError?: (error: unknown) => void;
}

/** The value of some files, kept current while the files change on disk. */
export interface WatchedFiles<T> {
  /** the value of the last contents that parsed */
  current(): T;
  /** reads the files now; true when a new value was taken */
  refresh(): Promise<boolean>;
  /** stops re-reading */
  close(): void;
}

export const DEFAULT_RELOAD_INTERVAL_MS = 10_000;

/**
 * Reads files at once (a failure is a ConfigError: the process must not start half-configured)
 * and polls them afterwards. Polling rather than fs.watch: Kubernetes replaces a mounted
 * Secret by swapping a symlinked directory, which inotify on the file itself does not see.
 * Contents that fail to parse (say the certificate is new but the key not yet) keep the old
 * value until a later read fits.
 */
export function watchFiles<T>(options: WatchedFilesOptions<T>): WatchedFiles<T> {
  const { paths, parse } = options;
  let contents: Buffer[];
  let value: T;
  try {
    contents = paths.map((path) => readFileSync(path));
    value = parse(contents);
  } catch (error) {
    throw new ConfigError([`cannot use ${paths.join(', ')}: ${describe(error)}`]);
  }
  let reading: Promise<boolean> | undefined;

  const read = async (): Promise<boolean> => {
    const next = await Promise.all(paths.map((path) => readFile(path)));
    if (next.every((buffer, index) => buffer.equals(contents[index] as Buffer))) return false;
    const parsed = parse(next);
    contents = next;
    value = parsed;
    options.onChange?.(parsed);
    return true;
  };
  const refresh = (): Promise<boolean> => {
    reading ??= read()
      .catch((error: unknown) => {
        options.onError?.(error);
        return false;
      })
      .finally(() => {
        reading = undefined;
      });
    return reading;
  };

  const intervalMs = options.intervalMs ?? DEFAULT_RELOAD_INTERVAL_MS;
  const timer = intervalMs > 0 ? setInterval(() => void refresh(), intervalMs) : undefined;
  timer?.unref();
  return {
    current: () => value,
    refresh,
    close: () => clearInterval(timer),
  };
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

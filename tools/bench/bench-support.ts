// What the benchmark scripts share: their `--key=value` options, the median they report, and
// the section of docs/benchmarks.md each rewrites.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

/** `--key=value` and bare `--flag` (value 'true') from the command line. */
export function benchArgs(argv: readonly string[] = process.argv.slice(2)): Map<string, string> {
  return new Map(
    argv.map((arg) => {
      // the first '=' ends the key: a value may hold more of them (--traced-env=K=V)
      const option = arg.replace(/^--/, '');
      const at = option.indexOf('=');
      return at < 0 ? ([option, 'true'] as const) : ([option.slice(0, at), option.slice(at + 1)] as const);
    }),
  );
}

/** The median; the mean of the middle two for an even count, NaN for none. */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

const DOC_PATH = fileURLToPath(new URL('../../docs/benchmarks.md', import.meta.url));

/**
 * Replaces `<!-- name:start -->` ... `<!-- name:end -->` in docs/benchmarks.md with `section`
 * (which carries those markers), or appends it when absent.
 */
export function writeBenchmarkSection(name: string, section: string): void {
  const intro = [
    '# Benchmarks',
    '',
    'Figures measured on the development machine; rerun them on yours. Each benchmark under',
    '`tools/bench/` rewrites its own section below.',
    '',
  ].join('\n');
  let doc = existsSync(DOC_PATH) ? readFileSync(DOC_PATH, 'utf8') : intro;
  const pattern = new RegExp(`<!-- ${name}:start -->[\\s\\S]*?<!-- ${name}:end -->`);
  doc = pattern.test(doc) ? doc.replace(pattern, () => section) : `${doc.trimEnd()}\n\n${section}\n`;
  writeFileSync(DOC_PATH, doc);
  console.error(`wrote ${path.relative(process.cwd(), DOC_PATH)}`);
}

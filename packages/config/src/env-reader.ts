import { SECRET_VARIABLES } from './variables.js';
import { parseValue, type Codec } from './values.js';

export type Env = Readonly<Record<string, string | undefined>>;

/** Where problems and warnings go; read sides swap in one that turns problems into warnings. */
export interface Report {
  problem(message: string): void;
  warn(message: string): void;
}

export interface Found {
  readonly name: string;
  readonly value: string;
}

const MAX_SHOWN = 200;

/** A value as shown in a message: quoted, shortened, secrets and URL passwords masked. */
export function showValue(name: string, value: string, isSecret = SECRET_VARIABLES.has(name)): string {
  if (isSecret) return '***';
  const masked = value.replace(/^([a-z][a-z0-9+.-]*:\/\/[^/@:]*):[^/@]*@/i, '$1:***@');
  const shortened = masked.length > MAX_SHOWN ? `${masked.slice(0, MAX_SHOWN)}...` : masked;
  return JSON.stringify(shortened);
}

/** `NAME="value": expected ...` plus the bad list items, if any. */
export function invalidMessage(subject: string, shown: string, expected: string, details: readonly string[] = []) {
  const why = details.length > 0 ? ` (${details.join('; ')})` : '';
  return `${subject}=${shown}: expected ${expected}${why}`;
}

/**
 * Reads variables by name with aliases. An empty or blank value counts as unset, because
 * container tooling commonly renders "unset" as `NAME=`.
 */
export class EnvReader {
  constructor(
    private readonly env: Env,
    readonly report: Report,
  ) {}

  /** The same variables, with problems reported elsewhere. */
  withReport(report: Report): EnvReader {
    return new EnvReader(this.env, report);
  }

  raw(name: string): string | undefined {
    const value = this.env[name];
    return value === undefined || value.trim() === '' ? undefined : value;
  }

  /** The first set name of `[name, ...aliases]`; warns when more than one is set. */
  lookup(name: string, aliases: readonly string[] = []): Found | undefined {
    const found = [name, ...aliases].flatMap((candidate) => {
      const value = this.raw(candidate);
      return value === undefined ? [] : [{ name: candidate, value }];
    });
    const [first, ...ignored] = found;
    for (const other of ignored) {
      this.report.warn(`both ${first!.name} and ${other.name} are set; using ${first!.name}`);
    }
    return first;
  }

  isSet(name: string, aliases: readonly string[] = []): boolean {
    return [name, ...aliases].some((candidate) => this.raw(candidate) !== undefined);
  }

  /** The parsed value; undefined when unset, or when invalid (then a problem is reported). */
  read<T>(codec: Codec<T>, name: string, aliases: readonly string[] = []): T | undefined {
    const found = this.lookup(name, aliases);
    if (found === undefined) return undefined;
    return this.parse(codec, found);
  }

  readOr<T>(codec: Codec<T>, name: string, fallback: T, aliases: readonly string[] = []): T {
    return this.read(codec, name, aliases) ?? fallback;
  }

  parse<T>(codec: Codec<T>, found: Found): T | undefined {
    const result = parseValue(codec, found.value);
    if (result.ok) return result.value;
    const details = [...result.details, ...hint(found)];
    this.report.problem(invalidMessage(found.name, showValue(found.name, found.value), codec.expected, details));
    return undefined;
  }

  names(): string[] {
    return Object.keys(this.env).filter((name) => this.raw(name) !== undefined);
  }
}

function hint(found: Found): string[] {
  // Kubernetes injects <SERVICE>_PORT=tcp://ip:port for every Service; one named "cos" collides.
  if (/^tcp:\/\//.test(found.value) && /_PORT$/.test(found.name)) {
    return [
      'Kubernetes sets such a value for a Service of that name prefix; rename the Service or set enableServiceLinks: false',
    ];
  }
  return [];
}

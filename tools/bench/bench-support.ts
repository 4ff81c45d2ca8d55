// What the benchmark scripts share: their `--key=value` options, the median they report, and
// the section of docs/benchmarks.md each rewrites.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

/**
 * `--key=value` and bare `--flag` (value 'true') from the command line, by node:util parseArgs
 * (not strict: each script reads the keys it knows; the first '=' ends the key, so a value may
 * hold more of them, e.g. --traced-env=K=V).
 */
export function benchArgs(argv: readonly string[] = process.argv.slice(2)): Map<string, string> {
  const { values } = parseArgs({ args: [...argv], strict: false, allowPositionals: true });
  return new Map(Object.entries(values).map(([key, value]) => [key, String(value)] as const));
}

/**
 * The verdict on a cost measured side by side: met only when throughput falls by less than
 * `limit` AND CPU per command rises by less than it, since a change can keep the throughput of a
 * machine with idle cores while costing each command more CPU (a "met" beside "+30% CPU"
 * misleads). `throughput` and `cpu` are relative changes (-0.05 = 5% less).
 */
export function costVerdict(change: { readonly throughput: number; readonly cpu: number }, limit: number, target: string): string {
  const pct = (v: number) => `${v >= 0 ? '+' : ''}${(100 * v).toFixed(1)}%`;
  const past: string[] = [];
  if (!(change.throughput > -limit)) past.push(`throughput ${pct(change.throughput)}`);
  if (!(change.cpu < limit)) past.push(`CPU per command ${pct(change.cpu)}`);
  return past.length === 0
    ? ` — **met** (target: ${target}, in throughput and in CPU per command)`
    : ` — **missed** (target: ${target}, in throughput and in CPU per command: ${past.join(' and ')})`;
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

/** The benchmarks' PostgreSQL (COS_BENCH_POSTGRES_URL, default the local server's `postgres` database). */
export function benchPostgresUrl(): URL {
  return new URL(process.env['COS_BENCH_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres');
}

/** The connection settings in a postgres:// URL, as pg.Client and createDatabase take them. */
export function connectionOf(url: URL): { host: string; port: number; user: string; password: string; database: string } {
  return {
    host: url.hostname,
    port: Number(url.port || 5432),
    user: decodeURIComponent(url.username || 'postgres'),
    password: decodeURIComponent(url.password),
    database: url.pathname.slice(1) || 'postgres',
  };
}

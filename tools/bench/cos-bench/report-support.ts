// What the reports of cos-bench.ts share: per-cell medians, ratios paired within a repeat, the
// machine, and the two side-by-side report shapes.
import * as os from 'node:os';
import { costVerdict, median, writeBenchmarkSection } from '../bench-support.js';
import type { Bench, Cell, System } from './run.js';

export function machineDescription(): string {
  const cpu = os.cpus();
  return `${cpu[0]?.model ?? 'unknown CPU'}, ${cpu.length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM, Node ${process.version}`;
}

/** Writes one section of docs/benchmarks.md from its lines. */
export function writeSection(name: string, lines: string[]): void {
  writeBenchmarkSection(name, lines.join('\n'));
}

/** One cell's figures over its repeats, for the side-by-side reports: medians, errors summed. */
export function repeatMedians(mine: readonly Cell[]) {
  return {
    perSecond: median(mine.map((c) => c.result.perSecond)),
    runs: mine.map((c) => c.result.perSecond),
    p50: median(mine.map((c) => c.result.p50Ms)),
    p99: median(mine.map((c) => c.result.p99Ms)),
    errors: mine.reduce((sum, c) => sum + c.result.errors, 0),
    client: median(mine.map((c) => c.cpu.client)),
    server: median(mine.map((c) => c.cpu.server)),
    handler: median(mine.map((c) => c.cpu.handler)),
    receiver: median(mine.map((c) => c.cpu.receiver)),
    postgres: median(mine.map((c) => c.cpu.postgres)),
    spans: median(mine.map((c) => c.spansPerCommand)),
  };
}

/**
 * The median over repeats of `pick(b) / pick(a)` within each repeat: the two cells of a repeat
 * ran back to back, so the ratio cancels the drift of a shared machine that a ratio of medians
 * over the whole run keeps.
 */
export function pairedRatio(a: readonly Cell[], b: readonly Cell[], pick: (cell: Cell) => number): number {
  const ratios: number[] = [];
  for (const cell of a) {
    const other = b.find((c) => c.repeat === cell.repeat);
    if (other) ratios.push(pick(other) / pick(cell));
  }
  return median(ratios);
}

/** A latency in ms, 2 decimals below 10 ms, else 1; '-' for none. */
export function latencyMs(v: number): string {
  return Number.isFinite(v) ? (v < 10 ? v.toFixed(2) : v.toFixed(1)) : '-';
}

/** Two systems side by side, the second's cost against the first, in a docs section. */
export function reportSideBySide(
  bench: Bench,
  cells: Cell[],
  options: {
    before: System;
    after: System;
    column: string;
    names: { before: string; after: string };
    /** a target the cost is judged against; none: the figures only */
    cost?: string;
    limit?: number;
    heading: string;
    run: string[];
  },
) {
  const { callerCounts, repeats, warmupMs, durationMs, entityCount } = bench.options;
  const { before, after, names } = options;
  const pct = (v: number) => `${v >= 0 ? '+' : ''}${(100 * v).toFixed(1)}%`;
  const lines = [
    `| callers | ${options.column} | cmd/s | p50 ms | p99 ms | cos-server CPU ms/cmd | PostgreSQL CPU ms/cmd | errors |`,
    '|--:|:--|--:|--:|--:|--:|--:|--:|',
  ];
  const changes: string[] = [];
  for (const callers of callerCounts) {
    const mine = (system: System) => cells.filter((c) => c.system === system && c.callers === callers);
    for (const system of [before, after]) {
      const s = repeatMedians(mine(system));
      lines.push(
        `| ${callers} | ${system === after ? names.after : names.before} | ${s.perSecond.toFixed(0)} | ${latencyMs(s.p50)} | ${latencyMs(s.p99)} | ${s.server.toFixed(3)} | ${s.postgres.toFixed(3)} | ${s.errors} |`,
      );
    }
    const ratio = (pick: (cell: Cell) => number) => pairedRatio(mine(before), mine(after), pick);
    const throughput = ratio((c) => c.result.perSecond) - 1;
    const cpu = ratio((c) => c.cpu.server) - 1;
    changes.push(
      `- ${callers} caller${callers === 1 ? '' : 's'}: throughput ${pct(throughput)}, ` +
        `p50 ${pct(ratio((c) => c.result.p50Ms) - 1)}, p99 ${pct(ratio((c) => c.result.p99Ms) - 1)}, ` +
        `cos-server CPU per command ${pct(cpu)}` +
        (options.limit === undefined ? '' : costVerdict({ throughput, cpu }, options.limit, options.cost ?? '')),
    );
  }
  const body = [
    ...lines,
    '',
    ...changes,
    '',
    `Table: medians of ${repeats} runs. Changes: the median over the runs of the ratio within each run ` +
      `(the two sides of a run measured back to back, alternating which goes first). Each cell ` +
      `${warmupMs / 1000} s warm-up then ${durationMs / 1000} s measured; ${entityCount.toLocaleString('en')} entities, round robin. ` +
      // other work on a shared machine shows here; well above the core count, the absolute figures mean little
      `Load average when the run ended: ${os.loadavg()[0]!.toFixed(1)} on ${os.cpus().length} cores.`,
  ];
  printAndWrite(bench, options.heading, options.run, body);
}

/**
 * `after` against cos-server as it is (`cos`), side by side: throughput, latency and the CPU per
 * command of the client, cos-server and the handler, in a docs section.
 */
export function reportHops(
  bench: Bench,
  cells: Cell[],
  options: { after: System; column: string; names: { cos: string; after: string }; note: string; heading: string; run: string[] },
) {
  const { callerCounts, repeats, warmupMs, durationMs, entityCount } = bench.options;
  const { after, names } = options;
  const pct = (v: number) => `${v >= 0 ? '+' : ''}${(100 * v).toFixed(1)}%`;
  const lines = [
    `| callers | ${options.column} | cmd/s | p50 ms | p99 ms | client CPU ms/cmd | cos-server CPU ms/cmd | handler CPU ms/cmd | errors |`,
    '|--:|:--|--:|--:|--:|--:|--:|--:|--:|',
  ];
  const changes: string[] = [];
  for (const callers of callerCounts) {
    const mine = (system: System) => cells.filter((c) => c.system === system && c.callers === callers);
    for (const system of ['cos', after] as const) {
      const s = repeatMedians(mine(system));
      lines.push(
        `| ${callers} | ${system === after ? names.after : names.cos} | ${s.perSecond.toFixed(0)} | ${latencyMs(s.p50)} | ${latencyMs(s.p99)} | ` +
          `${s.client.toFixed(3)} | ${s.server.toFixed(3)} | ${s.handler.toFixed(3)} | ${s.errors} |`,
      );
    }
    const ratio = (pick: (cell: Cell) => number) => pairedRatio(mine('cos'), mine(after), pick);
    changes.push(
      `- ${callers} caller${callers === 1 ? '' : 's'}: throughput ${pct(ratio((c) => c.result.perSecond) - 1)}, ` +
        `p50 ${pct(ratio((c) => c.result.p50Ms) - 1)}, p99 ${pct(ratio((c) => c.result.p99Ms) - 1)}; CPU per command: ` +
        `cos-server ${pct(ratio((c) => c.cpu.server) - 1)}, client ${pct(ratio((c) => c.cpu.client) - 1)}, ` +
        `handler ${pct(ratio((c) => c.cpu.handler) - 1)}`,
    );
  }
  const body = [
    ...lines,
    '',
    ...changes,
    '',
    `Table: medians of ${repeats} runs. Changes (${names.after} against ${names.cos}): the median over the runs of the ratio within each run ` +
      `(both measured back to back, alternating which goes first). Each cell ${warmupMs / 1000} s warm-up then ` +
      `${durationMs / 1000} s measured; ${entityCount.toLocaleString('en')} entities, round robin. ${options.note}`,
  ];
  printAndWrite(bench, options.heading, options.run, body);
}

/** Prints a side-by-side report's body and, unless --no-write, writes it in its docs section under `heading` and `run`. */
function printAndWrite(bench: Bench, heading: string, run: readonly string[], body: readonly string[]): void {
  const { writeDoc, docSection } = bench.options;
  console.log(body.join('\n'));
  if (!writeDoc) return;
  writeSection(docSection, [
    `<!-- ${docSection}:start -->`,
    heading,
    '',
    ...run,
    '',
    `Machine: ${machineDescription()}.`,
    '',
    ...body,
    `<!-- ${docSection}:end -->`,
  ]);
}

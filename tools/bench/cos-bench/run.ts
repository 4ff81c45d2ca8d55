// What every mode of cos-bench.ts shares: the handler, the load generator, PostgreSQL schemas,
// the cos-servers, and the cells (warm-up then measured window, CPU per command from /proc),
// repeated, each mode's two systems back to back.
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import pg from 'pg';
import type { TestPki } from '@chiefofstate/testing';
import type { LoadRequest, LoadResult } from './load.js';
import { TICK_MS, cpuTicks, freePort, profile, start, tsx, ROOT, type Proc } from './processes.js';

export const COS_MAIN = path.join(ROOT, 'apps/cos-server/dist/main.js');

/**
 * cos: cos-server (tracing off; `one` under --replicas); ceiling: the same gRPC hops, nothing
 * persisted; traced: cos-server exporting every span; two: two cos-server replicas splitting the
 * entity shards; baseline: the cos-server of --baseline's checkout; tls: cos-server with TLS on
 * both hops; keyed: cos-server called with an idempotency key on every call; httpHandler:
 * cos-server calling an HTTP write handler; http: cos-server called on its HTTP/JSON front end
 */
export type System = 'cos' | 'ceiling' | 'traced' | 'two' | 'baseline' | 'tls' | 'keyed' | 'http' | 'httpHandler';
export type Keys = 'spread' | 'hot';

export interface BenchOptions {
  readonly durationMs: number;
  readonly warmupMs: number;
  readonly repeats: number;
  readonly callerCounts: readonly number[];
  readonly entityCount: number;
  readonly keySets: readonly Keys[];
  readonly memoryEntities: number;
  readonly measureMemory: boolean;
  readonly writeDoc: boolean;
  /** the docs/benchmarks.md section a side-by-side mode writes */
  readonly docSection: string;
  /** --traced-env: more environment for the traced cos-server only */
  readonly tracedEnv: Record<string, string>;
  readonly cpuProfDir: string | undefined;
  /** --baseline: the other checkout's built cos-server */
  readonly baselineMain: string | undefined;
  readonly serverUrl: URL;
}

export interface Cell {
  /** which repeat (0-based): the systems' cells of one repeat ran back to back */
  repeat: number;
  system: System;
  keys: Keys;
  callers: number;
  result: LoadResult;
  /**
   * CPU ms per command: load client, server (COS or ceiling; both replicas summed for `two`),
   * handler, PostgreSQL backends, OTLP receiver
   */
  cpu: { client: number; server: number; handler: number; postgres: number; receiver: number };
  /** spans the receiver got during the cell per command completed in it (the exporter batches, so approximate) */
  spansPerCommand: number;
  /**
   * --replicas: ProcessCommands forwarded to the other replica during the cell per command
   * completed in it (warm-up included, like the counter), and those handled where they arrived
   * because the owner refused the connection; the entity shards each replica owned after the cell
   */
  routing?: { forwarded: number; unreachable: number; owned: number[] };
}

export interface Routing {
  /** cos_forwarded_calls_total of ProcessCommand, summed over the system's replicas */
  forwarded: number;
  unreachable: number;
  /** cos_entity_shards_owned of each replica */
  owned: number[];
}

/** One measured system: the processes whose CPU counts as its server's, and where the load calls. */
export interface SystemEntry {
  readonly servers: Proc[];
  readonly target: string | string[];
  /** its PostgreSQL application name (COS_SERVICE_NAME), for its backends' CPU; none for the ceiling */
  readonly serviceName?: string;
  /** its /metrics ports */
  readonly metricsPorts?: number[];
}

export interface SpanCount {
  spans: number;
  requests: number;
  rejected: number;
}

/** A way of running the benchmark: the system measured against `cos`, and its report. */
export interface Mode {
  /** its command-line flag; undefined for the default (cos-server against its ceiling) */
  readonly flag: string | undefined;
  /** its two systems, in the order the first cell runs them */
  readonly systems: readonly System[];
  /** the docs/benchmarks.md section it writes unless --doc-section names another */
  readonly docSection: string;
  /** a system's name in the output */
  shown?(system: System): string;
  /** more environment for the handler process */
  handlerEnv?(bench: Bench): Record<string, string>;
  /** starts what it measures besides `cos` (which runs already) and registers it in bench.systems */
  start(bench: Bench): Promise<void>;
  /** what the load sends to `system` beyond the common request */
  loadExtras?(bench: Bench, system: System): Partial<LoadRequest>;
  /** around each cell: the routing figures (--replicas) */
  routing?(bench: Bench, system: System): Promise<Routing>;
  /** after the cells: the report (and anything it measures first) */
  report(bench: Bench, cells: Cell[]): Promise<void> | void;
}

/** The run in progress, as the modes see it. */
export interface Bench {
  readonly options: BenchOptions;
  readonly mode: Mode;
  readonly runId: string;
  /** the run's base schema and service name (cos); other systems append to them */
  readonly schema: string;
  readonly serviceName: string;
  readonly admin: pg.Client;
  readonly systems: Map<System, SystemEntry>;
  /** every process started, stopped at the end */
  readonly procs: Proc[];
  /** the schemas created, dropped at the end */
  readonly schemas: string[];
  handler: Proc | undefined;
  handlerPort: number;
  load: Proc | undefined;
  /** --tracing-cost: the OTLP receiver */
  receiver: { proc: Proc; port: number } | undefined;
  /** --tls-cost: the CA, and the certificate both servers (cos-server and the handler) present */
  pki: TestPki | undefined;
  /** calls completed (warm-up and prefill included) per system, to check the spans received */
  readonly completedBy: Map<System, number>;
}

/** Creates a schema dropped at the end of the run. */
export async function createSchema(bench: Bench, name: string): Promise<string> {
  await bench.admin.query(`create schema ${name}`);
  bench.schemas.push(name);
  return name;
}

/** Starts a built cos-server on PostgreSQL, on `schemaName`, calling the handler; resolves once it serves. */
export async function startCos(
  bench: Bench,
  extraEnv: Record<string, string> = {},
  name = 'cos-server',
  schemaName = bench.schema,
  main = COS_MAIN,
): Promise<{ proc: Proc; port: number; metricsPort: number }> {
  const { serverUrl, cpuProfDir } = bench.options;
  const port = await freePort();
  const metricsPort = await freePort();
  const proc = start(name, [...profile(cpuProfDir, name), main], {
    COS_ADDRESS: '127.0.0.1',
    COS_PORT: String(port),
    // its /metrics port too, so a cos-server already on the default port is no obstacle
    COS_METRICS_PORT: String(metricsPort),
    COS_POSTGRES_HOST: serverUrl.hostname,
    COS_POSTGRES_PORT: serverUrl.port || '5432',
    COS_POSTGRES_USER: decodeURIComponent(serverUrl.username) || 'postgres',
    COS_POSTGRES_PASSWORD: decodeURIComponent(serverUrl.password) || 'unused',
    COS_POSTGRES_DB: serverUrl.pathname.slice(1) || 'postgres',
    COS_POSTGRES_SCHEMA: schemaName,
    COS_SERVICE_NAME: bench.serviceName,
    WRITE_SIDE_HANDLER_SERVICE_HOST: '127.0.0.1',
    WRITE_SIDE_HANDLER_SERVICE_PORT: String(bench.handlerPort),
    ...extraEnv,
  });
  bench.procs.push(proc);
  await proc.waitFor(/chief-of-state serving/);
  return { proc, port, metricsPort };
}

/** A second cos-server of the same build, on a schema and service name of its own, as `system`. */
export async function startSecondCos(bench: Bench, system: System, suffix: string, env: Record<string, string> = {}, main = COS_MAIN) {
  const schema = await createSchema(bench, `${bench.schema}_${suffix.replaceAll('-', '_')}`);
  const serviceName = `${bench.serviceName}-${suffix}`;
  const started = await startCos(bench, { COS_SERVICE_NAME: serviceName, ...env }, `cos-server-${suffix}`, schema, main);
  bench.systems.set(system, { servers: [started.proc], target: `127.0.0.1:${started.port}`, serviceName, metricsPorts: [started.metricsPort] });
  return started;
}

export async function spanCount(bench: Bench): Promise<SpanCount> {
  if (bench.receiver === undefined) return { spans: 0, requests: 0, rejected: 0 };
  const response = await fetch(`http://127.0.0.1:${bench.receiver.port}/count`);
  return (await response.json()) as SpanCount;
}

let nextRequestId = 1;
const pending = new Map<number, (result: LoadResult) => void>();

/** Has the load generator run `request` against `system`. */
export async function drive(
  bench: Bench,
  system: System,
  request: Omit<LoadRequest, 'id' | 'target' | 'traceparent' | 'idempotencyKeys' | 'http'>,
): Promise<LoadResult> {
  const id = nextRequestId++;
  const full: LoadRequest = {
    ...request,
    id,
    target: bench.systems.get(system)!.target,
    traceparent: false,
    idempotencyKeys: false,
    http: false,
    ...bench.mode.loadExtras?.(bench, system),
  };
  const result = await new Promise<LoadResult>((resolve, reject) => {
    pending.set(id, resolve);
    bench.load!.child.send(full, (error) => error && reject(error));
  });
  bench.completedBy.set(system, (bench.completedBy.get(system) ?? 0) + result.completed);
  return result;
}

/** The entities a cell goes round robin over. */
export function entities(bench: Bench, keys: Keys): { prefix: string; count: number } {
  return keys === 'spread' ? { prefix: `e-${bench.runId}-`, count: bench.options.entityCount } : { prefix: `hot-${bench.runId}`, count: 1 };
}

/** Runs the benchmark in `mode`: the processes, the cells, the mode's report; cleans up whatever happens. */
export async function runBench(options: BenchOptions, mode: Mode): Promise<void> {
  const runId = randomBytes(4).toString('hex');
  const admin = new pg.Client({ connectionString: options.serverUrl.toString() });
  const bench: Bench = {
    options,
    mode,
    runId,
    schema: `cos_bench_${runId}`,
    serviceName: `cos-bench-${runId}`,
    admin,
    systems: new Map(),
    procs: [],
    schemas: [],
    handler: undefined,
    handlerPort: 0,
    load: undefined,
    receiver: undefined,
    pki: undefined,
    completedBy: new Map(),
  };
  await admin.connect();
  await createSchema(bench, bench.schema);
  try {
    const handler = start('handler', [...profile(options.cpuProfDir, 'handler'), ...tsx('handler.ts')], mode.handlerEnv?.(bench) ?? {});
    bench.handler = handler;
    bench.procs.push(handler);
    bench.handlerPort = Number((await handler.waitFor(/^listening (\d+)/m))[1]);
    const cos = await startCos(bench);
    bench.systems.set('cos', { servers: [cos.proc], target: `127.0.0.1:${cos.port}`, serviceName: bench.serviceName, metricsPorts: [cos.metricsPort] });
    await mode.start(bench);
    await startLoad(bench);
    await prefill(bench);
    const cells = await measure(bench);
    await mode.report(bench, cells);
  } finally {
    if (bench.load?.child.connected) bench.load.child.send('exit');
    await Promise.all(bench.procs.map((proc) => proc.stop()));
    for (const schema of bench.schemas) await admin.query(`drop schema if exists ${schema} cascade`);
    bench.pki?.remove();
    await admin.end();
  }
}

async function startLoad(bench: Bench): Promise<void> {
  const load = start('load', tsx('load.ts'), {}, true);
  bench.load = load;
  bench.procs.push(load);
  await new Promise<void>((resolve, reject) => {
    load.child.on('message', (message: LoadResult | 'ready' | { id: number; fatal: string }) => {
      if (message === 'ready') return resolve();
      if ('fatal' in message) return reject(new Error(`load generator: ${message.fatal}`));
      pending.get(message.id)?.(message);
      pending.delete(message.id);
    });
    load.child.once('exit', () => reject(new Error(`load generator exited:\n${load.output()}`)));
  });
}

function shown(bench: Bench, system: System): string {
  return bench.mode.shown?.(system) ?? system;
}

/** Every entity gets its first command (and is activated) before anything is measured; connections get warm. */
async function prefill(bench: Bench): Promise<void> {
  const { options, mode } = bench;
  const sideBySide = mode.flag !== undefined;
  const persisting = mode.systems.filter((system) => system !== 'ceiling');
  console.error(`prefill: ${options.entityCount} entities${sideBySide ? '' : ' and the hot one'} on ${persisting.map((s) => shown(bench, s)).join(' and ')}`);
  for (const system of persisting) {
    for (const keys of sideBySide ? options.keySets : (['spread', 'hot'] as const)) {
      const filled = await drive(bench, system, { callers: 64, ...entities(bench, keys), mode: 'once', warmupMs: 0, durationMs: 0 });
      if (filled.errors > 0) throw new Error(`prefill failed: ${filled.firstError}`);
    }
  }
  // and both sides get their connections warm
  for (const system of mode.systems) {
    await drive(bench, system, { callers: 16, ...entities(bench, 'spread'), mode: 'timed', warmupMs: 0, durationMs: 1000 });
  }
}

/** The cells: each repeat, caller count and key set, the two systems back to back (alternating which goes first). */
async function measure(bench: Bench): Promise<Cell[]> {
  const { repeats, callerCounts, keySets } = bench.options;
  const systems = bench.mode.systems;
  const cells: Cell[] = [];
  for (let repeat = 0; repeat < repeats; repeat++) {
    for (const callers of callerCounts) {
      for (const keys of keySets) {
        const order = (repeat + callerCounts.indexOf(callers)) % 2 === 0 ? systems : [...systems].reverse();
        for (const system of order) {
          const cell = await measureCell(bench, repeat, system, keys, callers);
          cells.push(cell);
          logCell(bench, cell);
        }
      }
    }
  }
  return cells;
}

async function measureCell(bench: Bench, repeat: number, system: System, keys: Keys, callers: number): Promise<Cell> {
  const { warmupMs, durationMs } = bench.options;
  const { servers, serviceName } = bench.systems.get(system)!;
  const load = bench.load!;
  const handler = bench.handler!;
  const receiver = bench.receiver?.proc;
  const serverTicks = () => servers.reduce((sum, server) => sum + cpuTicks(server.child.pid), 0);
  const routeBefore = bench.mode.routing ? await bench.mode.routing(bench, system) : undefined;
  // PostgreSQL backends come and go with the pool: ticks of the ones at the start, and
  // of new ones from zero.
  const pgBefore = new Map<number, number>();
  if (serviceName !== undefined) for (const pid of await backendPids(bench, serviceName)) pgBefore.set(pid, cpuTicks(pid));
  const spansBefore = await spanCount(bench);
  // CPU is sampled around the whole cell; the warm-up share is taken out pro rata.
  const before = {
    client: cpuTicks(load.child.pid),
    server: serverTicks(),
    handler: cpuTicks(handler.child.pid),
    receiver: cpuTicks(receiver?.child.pid),
  };
  const result = await drive(bench, system, { callers, ...entities(bench, keys), mode: 'timed', warmupMs, durationMs });
  const spansPerCommand = ((await spanCount(bench)).spans - spansBefore.spans) / Math.max(1, result.completed);
  const share = durationMs / (durationMs + warmupMs);
  const perCommand = (ticks: number) => (ticks * TICK_MS * share) / Math.max(1, result.ok);
  const cpu = {
    client: perCommand(cpuTicks(load.child.pid) - before.client),
    server: perCommand(serverTicks() - before.server),
    handler: perCommand(cpuTicks(handler.child.pid) - before.handler),
    postgres: perCommand(
      serviceName !== undefined
        ? [...new Set([...pgBefore.keys(), ...(await backendPids(bench, serviceName))])].reduce(
            (sum, pid) => sum + Math.max(0, cpuTicks(pid) - (pgBefore.get(pid) ?? 0)),
            0,
          )
        : 0,
    ),
    receiver: perCommand(cpuTicks(receiver?.child.pid) - before.receiver),
  };
  let route: Cell['routing'];
  if (routeBefore) {
    const after = await bench.mode.routing!(bench, system);
    const per = (n: number) => n / Math.max(1, result.completed);
    route = {
      forwarded: per(after.forwarded - routeBefore.forwarded),
      unreachable: per(after.unreachable - routeBefore.unreachable),
      owned: after.owned,
    };
  }
  return { repeat, system, keys, callers, result, cpu, spansPerCommand, ...(route ? { routing: route } : {}) };
}

function logCell(bench: Bench, cell: Cell): void {
  const { repeat, system, keys, callers, result, cpu, spansPerCommand, routing: route } = cell;
  console.error(
    `#${repeat + 1} ${shown(bench, system).padEnd(7)} ${keys.padEnd(6)} ${String(callers).padStart(3)} callers: ` +
      `${result.perSecond.toFixed(0).padStart(6)}/s p50 ${result.p50Ms.toFixed(2)} ms p99 ${result.p99Ms.toFixed(2)} ms` +
      (result.errors > 0 ? ` errors ${result.errors} (${result.firstError})` : '') +
      ` | cpu ms/cmd client ${cpu.client.toFixed(3)} server ${cpu.server.toFixed(3)} handler ${cpu.handler.toFixed(3)} pg ${cpu.postgres.toFixed(3)}` +
      (bench.receiver ? ` receiver ${cpu.receiver.toFixed(3)} | spans/cmd ${spansPerCommand.toFixed(2)}` : '') +
      (route
        ? ` | forwarded ${(100 * route.forwarded).toFixed(1)}%` +
          (route.unreachable > 0 ? ` owner unreachable ${(100 * route.unreachable).toFixed(1)}%` : '') +
          ` | shards ${route.owned.join('/')}`
        : ''),
  );
}

async function backendPids(bench: Bench, applicationName: string): Promise<number[]> {
  const result = await bench.admin.query<{ pid: number }>('select pid from pg_stat_activity where application_name = $1', [applicationName]);
  return result.rows.map((row) => row.pid);
}

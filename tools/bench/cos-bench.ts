/**
 * ProcessCommand benchmark: cos-server against its ceiling, in the same run, on the real
 * PostgreSQL. Four processes besides this one:
 *   - handler: a minimal WriteSideHandlerService on a stock @grpc/grpc-js server
 *     (events = [command], resulting state = a 4-byte Any), cos-bench/handler.ts;
 *   - cos-server: the built apps/cos-server/dist/main.js on PostgreSQL, in a fresh schema;
 *   - ceiling: the same gRPC edge calling the same handler with the same client library, two calls
 *     per command and the reply, nothing persisted, cos-bench/ceiling.ts;
 *   - load: a stock @grpc/grpc-js client, closed loop, cos-bench/load.ts.
 * Cells: 1, 16, 64 and 256 concurrent callers, round robin over 10,000 entities and on one hot
 * entity, COS then ceiling (alternating which goes first), each a warm-up then a measured window;
 * repeated, medians reported. Then the resident memory of a fresh cos-server, idle and with
 * 100,000 active entities.
 *
 * --tracing-cost: instead of the ceiling, the same cos-server with tracing on (every span exported
 * over OTLP/HTTP to a receiver in its own process, cos-bench/otlp-receiver.ts) against tracing off;
 * the load client sends a sampled `traceparent` on every call to both, so every command is traced
 * where tracing is on. Writes <!-- tracing:start --> ... <!-- tracing:end --> instead.
 *
 * --replicas: instead of the ceiling, what entity sharding across replicas costs. `one`: the
 * cos-server above, every caller on it; `two`: two cos-server replicas on one schema of their own
 * (POD_IP=127.0.0.1, so each advertises 127.0.0.1:<its COS_PORT>), both serving and owning 8 of the
 * 16 entity shards (cos_entity_shards_owned) before anything is measured, the callers split evenly
 * between their two addresses (caller i on replica i mod 2), round robin over the same entities, so
 * about half the commands are forwarded once to the other replica. Per cell also the share of
 * commands forwarded (cos_forwarded_calls_total of both replicas over the cell) and the shards each
 * replica owns after it. CPU of the cos-server side is both replicas' summed. Same defaults as
 * --tracing-cost (callers 1,16,64, spread keys, no memory). Writes <!-- replicas:start --> ...
 * <!-- replicas:end --> instead (--doc-section names another).
 *
 * --baseline=DIR: instead of the ceiling, the cos-server built in another checkout DIR (e.g. a git
 * worktree of the previous release, `npm ci` and built there) against this one, side by side on the
 * same handler, load client and PostgreSQL, each on a schema of its own: what a change costs.
 * Same defaults as --tracing-cost. Writes <!-- baseline:start --> ... <!-- baseline:end -->.
 *
 * --tls-cost: instead of the ceiling, the same cos-server with TLS on both hops against TLS off:
 * the load client calls it over TLS (COS_TLS_CERT_FILE / COS_TLS_KEY_FILE) and it calls the
 * handler over TLS (COS_WRITE_SIDE_USE_TLS, COS_WRITE_SIDE_TLS_CA_FILE; the handler process
 * serves both a plaintext and a TLS port). Certificates from a throwaway CA (EC P-256). Same
 * defaults as --tracing-cost. Writes <!-- tls:start --> ... <!-- tls:end -->.
 * --http-handler: instead of the ceiling, the same cos-server calling the write handler over HTTP/JSON
 * (COS_WRITE_SIDE_PROTOCOL=http) against over gRPC: one handler process speaking both. Same
 * defaults as --tracing-cost. Writes <!-- http-handler:start --> ... <!-- http-handler:end -->.
 * --idempotency-cost: instead of the ceiling, what idempotency keys cost: the same cos-server build
 * twice, each on a schema of its own, the load sending a fresh `x-cos-idempotency-key` on every
 * call to the second (`keyed`) and none to the first. Same defaults as --tracing-cost. Writes
 * <!-- idempotency:start --> ... <!-- idempotency:end -->.
 * --http-cost: instead of the ceiling, ProcessCommand over the HTTP/JSON front end against gRPC:
 * the same cos-server build twice, each on a schema of its own, the second with
 * COS_SERVER_PROTOCOL=both, called over HTTP/1.1 keep-alive connections (one per caller) with
 * upstream's JSON (`{"command": <base64 Any>}`), the first over gRPC. Same defaults as
 * --tracing-cost. Writes <!-- http:start --> ... <!-- http:end -->.
 *
 * Build first (the benchmark runs the built server and packages, like production):
 *   npx nx run @chiefofstate/cos-server:build      (or pass --build)
 *   npx tsx tools/bench/cos-bench.ts --help
 *
 * This file reads the options and picks the mode; each mode (the system it measures against
 * cos-server, and its report) is a module of cos-bench/modes/, and cos-bench/run.ts runs them all.
 *
 * PostgreSQL: COS_BENCH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/postgres); the
 * schema is dropped afterwards. Writes the tables to docs/benchmarks.md between
 * <!-- cos:start --> and <!-- cos:end --> unless --no-write.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { baselineMode } from './cos-bench/modes/baseline.js';
import { ceilingMode } from './cos-bench/modes/ceiling.js';
import { httpCostMode } from './cos-bench/modes/http-cost.js';
import { httpHandlerMode } from './cos-bench/modes/http-handler.js';
import { idempotencyCostMode } from './cos-bench/modes/idempotency-cost.js';
import { replicasMode } from './cos-bench/modes/replicas.js';
import { tlsCostMode } from './cos-bench/modes/tls-cost.js';
import { tracingCostMode } from './cos-bench/modes/tracing-cost.js';
import { ROOT } from './cos-bench/processes.js';
import { COS_MAIN, runBench, type BenchOptions, type Keys, type Mode } from './cos-bench/run.js';

const MODES: readonly Mode[] = [tracingCostMode, replicasMode, baselineMode, tlsCostMode, idempotencyCostMode, httpHandlerMode, httpCostMode];

const USAGE = `usage: npx tsx tools/bench/cos-bench.ts [mode] [options]

modes (at most one; none: cos-server against its ceiling, section cos):
  --tracing-cost        tracing on against off (section tracing)
  --replicas            two replicas splitting the entity shards against one (section replicas)
  --baseline=DIR        the cos-server built in checkout DIR against this one (section baseline)
  --tls-cost            TLS on both hops against off (section tls)
  --idempotency-cost    a fresh idempotency key on every call against none (section idempotency)
  --http-handler        an HTTP write handler against a gRPC one (section http-handler)
  --http-cost           the HTTP/JSON front end against gRPC (section http)

options:
  --duration=5 --warmup=1 --repeats=3     seconds measured and of warm-up per cell; repeats
  --callers=1,16,64,256                   concurrent callers (modes: 1,16,64)
  --entities=10000 --keys=spread,hot      entities round robin; one hot entity (modes: spread)
  --memory-entities=100000 --no-memory    the memory measurement (default mode only)
  --no-write                              print only, do not rewrite docs/benchmarks.md
  --doc-section=NAME                      the section a mode writes (e.g. tracing-node24)
  --traced-env=K=V,...                    more environment for the traced cos-server (--tracing-cost)
  --cpu-prof=DIR                          CPU profiles of the servers and the handler into DIR
  --build                                 build cos-server first
  --help                                  this text

PostgreSQL: COS_BENCH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/postgres).`;

const { values: args } = parseArgsOrExit({
  options: {
    help: { type: 'boolean', short: 'h' },
    duration: { type: 'string' },
    warmup: { type: 'string' },
    repeats: { type: 'string' },
    callers: { type: 'string' },
    entities: { type: 'string' },
    keys: { type: 'string' },
    'memory-entities': { type: 'string' },
    'no-memory': { type: 'boolean' },
    'no-write': { type: 'boolean' },
    'doc-section': { type: 'string' },
    'traced-env': { type: 'string' },
    'cpu-prof': { type: 'string' },
    build: { type: 'boolean' },
    'tracing-cost': { type: 'boolean' },
    replicas: { type: 'boolean' },
    baseline: { type: 'string' },
    'tls-cost': { type: 'boolean' },
    'idempotency-cost': { type: 'boolean' },
    'http-handler': { type: 'boolean' },
    'http-cost': { type: 'boolean' },
  },
} as const);
/** parseArgs, strict: an unknown option or a missing value stops with the usage. */
function parseArgsOrExit<T extends ParseArgsConfig>(config: T): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (error) {
    console.error(`${error instanceof Error ? error.message : String(error)}\n\n${USAGE}`);
    process.exit(2);
  }
}
if (args.help) {
  console.log(USAGE);
  process.exit(0);
}

const chosen = MODES.filter((mode) => args[mode.flag as keyof typeof args] !== undefined);
if (chosen.length > 1) {
  console.error('--tracing-cost, --replicas, --baseline, --tls-cost, --idempotency-cost, --http-handler and --http-cost are separate runs: pass one of them');
  process.exit(2);
}
const mode = chosen[0] ?? ceilingMode;
const sideBySide = mode !== ceilingMode;
const baselineMain = args.baseline !== undefined ? path.resolve(args.baseline, 'apps/cos-server/dist/main.js') : undefined;
if (baselineMain !== undefined && !existsSync(baselineMain)) {
  console.error(`${baselineMain} is missing: build the baseline checkout first`);
  process.exit(2);
}

const options: BenchOptions = {
  durationMs: Number(args.duration ?? 5) * 1000,
  warmupMs: Number(args.warmup ?? 1) * 1000,
  repeats: Number(args.repeats ?? 3),
  callerCounts: (args.callers ?? (sideBySide ? '1,16,64' : '1,16,64,256')).split(',').map(Number),
  entityCount: Number(args.entities ?? 10_000),
  keySets: (args.keys ?? (sideBySide ? 'spread' : 'spread,hot')).split(',') as Keys[],
  memoryEntities: Number(args['memory-entities'] ?? 100_000),
  measureMemory: !args['no-memory'] && !sideBySide,
  writeDoc: !args['no-write'],
  /** the docs/benchmarks.md section a side-by-side mode writes, e.g. tracing-node24 for a run under another Node */
  docSection: args['doc-section'] ?? (sideBySide ? mode.docSection : 'tracing'),
  /**
   * --traced-env=K=V,K=V: more environment for the traced cos-server only, to take the cost apart
   * (e.g. OTEL_TRACES_SAMPLER=always_off: the SDK installed, nothing recorded). Use with --no-write.
   */
  tracedEnv: Object.fromEntries(
    (args['traced-env'] ?? '')
      .split(',')
      .filter((pair) => pair.includes('='))
      .map((pair) => [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)]),
  ),
  cpuProfDir: args['cpu-prof'],
  baselineMain,
  serverUrl: new URL(process.env['COS_BENCH_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres'),
};

if (args.build) {
  const built = spawnSync('npx', ['nx', 'run', '@chiefofstate/cos-server:build'], { cwd: ROOT, stdio: 'inherit' });
  if (built.status !== 0) process.exit(built.status ?? 1);
}
if (!existsSync(COS_MAIN)) {
  console.error(`${COS_MAIN} is missing: run \`npx nx run @chiefofstate/cos-server:build\` first (or pass --build)`);
  process.exit(2);
}

await runBench(options, mode);

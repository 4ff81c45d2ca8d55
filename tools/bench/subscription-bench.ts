/**
 * Subscription fan-out benchmark, on the real PostgreSQL: the built cos-server
 * (apps/cos-server/dist/main.js, COS_SUBSCRIPTION_ENABLED=true) in a fresh schema; N stock grpc-js
 * SubscribeAll streams (live only) and a writer appending to the same journal at a steady rate
 * (one event per append, through the journal's group commit, so every append transaction sends
 * the NOTIFY cos-server wakes on), both in this process.
 *
 * Lag = from the append being issued (before its COMMIT) to a subscriber receiving the event, per
 * (subscriber, event); p50 / p99 / max over every delivery after a 1 s warm-up. Then catch-up: N
 * subscribers from offset 0 read the whole journal written so far; events/s delivered in all.
 *
 *   npx tsx tools/bench/subscription-bench.ts [--subscribers=1,10,100] [--rate=1000] [--seconds=10] [--no-write]
 *       [--paths=fast,connect] [--profile=DIR]
 *
 * Paths: each fan-out is measured on two cos-server processes side by side, one with the gRPC
 * fast path for the streams (the default) and one with COS_GRPC_SERVER_FAST_PATH=false (Connect's
 * adapter serves them).
 *
 * Build first (`npx nx run @chiefofstate/cos-server:build`). PostgreSQL: COS_BENCH_POSTGRES_URL
 * (default postgres://postgres@127.0.0.1:5432/postgres). Writes its section of docs/benchmarks.md
 * between <!-- subscriptions:start --> and <!-- subscriptions:end --> unless --no-write.
 */
import { readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { benchArgs, writeBenchmarkSection } from './bench-support.js';
import { rerunWithSources } from './with-sources.js';

rerunWithSources(import.meta.url);

const { default: pg } = await import('pg');
const { create, toBinary } = await import('@bufbuild/protobuf');
const { timestampNow } = await import('@bufbuild/protobuf/wkt');
const { createJournal } = await import('@chiefofstate/journal');
const { createDatabase } = await import('@chiefofstate/postgres');
const { ChiefOfStateService, EventWrapperSchema, SubscribeAllRequestSchema } = await import('@chiefofstate/protocol');
const { createGrpcJsClient, freePort, pollUntil, startProcess } = await import('@chiefofstate/testing');
const { BinaryReader, WireType } = await import('@bufbuild/protobuf/wire');

const args = benchArgs();
const fanOuts = (args.get('subscribers') ?? '1,10,100').split(',').map(Number);
const rate = Number(args.get('rate') ?? 1000);
const seconds = Number(args.get('seconds') ?? 10);
const writeDoc = !args.has('no-write');
const paths = (args.get('paths') ?? 'fast,connect').split(',') as ('fast' | 'connect')[];
const serverUrl = new URL(process.env['COS_BENCH_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres');
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const COS_MAIN = path.join(ROOT, 'apps/cos-server/dist/main.js');
const ENTITIES = 1000;
const STREAMS_PER_CONNECTION = 25;
/** events each subscriber catches up on (the newest of the journal) */
const CATCH_UP = 10_000;

const schema = `bench_subs_${process.pid}`;
const connection = {
  host: serverUrl.hostname,
  port: Number(serverUrl.port || 5432),
  user: decodeURIComponent(serverUrl.username) || 'postgres',
  password: decodeURIComponent(serverUrl.password) || 'unused',
  database: serverUrl.pathname.slice(1) || 'postgres',
};

interface Server {
  readonly path: 'fast' | 'connect';
  readonly port: number;
  readonly metricsPort: number;
  readonly process: ReturnType<typeof startProcess>;
}

async function startServer(serverPath: 'fast' | 'connect'): Promise<Server> {
  const port = await freePort();
  const metricsPort = await freePort();
  const process_ = startProcess(
    process.execPath,
    // --profile=DIR: a V8 CPU profile of cos-server, written when it exits
    [...(args.has('profile') ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(args.get('profile') ?? '.')}`] : []), COS_MAIN],
    {
      COS_ADDRESS: '127.0.0.1',
      COS_PORT: String(port),
      COS_METRICS_PORT: String(metricsPort),
      COS_POSTGRES_HOST: connection.host,
      COS_POSTGRES_PORT: String(connection.port),
      COS_POSTGRES_USER: connection.user,
      COS_POSTGRES_PASSWORD: connection.password,
      COS_POSTGRES_DB: connection.database,
      COS_POSTGRES_SCHEMA: schema,
      COS_SUBSCRIPTION_ENABLED: 'true',
      COS_GRPC_SERVER_FAST_PATH: String(serverPath === 'fast'),
      // no command goes through it: an address nobody listens on
      WRITE_SIDE_HANDLER_SERVICE_HOST: '127.0.0.1',
      WRITE_SIDE_HANDLER_SERVICE_PORT: '9',
      POD_IP: '127.0.0.1',
    },
    { cwd: ROOT },
  );
  // the server migrates the schema
  await process_.waitFor(/chief-of-state serving/).catch((error: unknown) => {
    console.error(process_.output());
    throw error;
  });
  return { path: serverPath, port, metricsPort, process: process_ };
}

/** CPU seconds of a process so far (Linux /proc). */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function percentile(sorted: Float64Array, p: number): number {
  return sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

type Client = ReturnType<typeof createGrpcJsClient>;

/**
 * A stream message's offset (field 10), the rest skipped: the subscribers only note which event
 * arrived when, so their decoding does not take the cores cos-server is measured on.
 */
function offsetOf(bytes: Buffer): bigint {
  const reader = new BinaryReader(bytes);
  let offset = 0n;
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 10 && wireType === WireType.Varint) offset = BigInt(reader.uint64());
    else reader.skip(wireType, field);
  }
  return offset;
}

/** SubscribeAll on a grpc-js client, each message read as its offset only. */
function subscribeAll(client: Client, afterOffset?: bigint) {
  return client.raw.makeServerStreamRequest(
    `/${ChiefOfStateService.typeName}/${ChiefOfStateService.method.subscribeAll.name}`,
    (request: ReturnType<typeof create<typeof SubscribeAllRequestSchema>>) => Buffer.from(toBinary(SubscribeAllRequestSchema, request)),
    offsetOf,
    create(SubscribeAllRequestSchema, afterOffset === undefined ? {} : { afterOffset }),
  );
}

/** cos_subscription_lag_seconds{kind="all"} buckets now: upper bound -> cumulative count */
async function serverLagBuckets(metricsPort: number): Promise<Map<number, number>> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const buckets = new Map<number, number>();
  for (const match of text.matchAll(/^cos_subscription_lag_seconds_bucket\{[^}]*le="([^"]+)"[^}]*kind="all"[^}]*\} (\S+)$|^cos_subscription_lag_seconds_bucket\{[^}]*kind="all"[^}]*le="([^"]+)"[^}]*\} (\S+)$/gm)) {
    const le = match[1] ?? match[3]!;
    buckets.set(le === '+Inf' ? Number.POSITIVE_INFINITY : Number(le), Number(match[2] ?? match[4]));
  }
  return buckets;
}

/** The bucket bound under which `p`% of the observations made between two samples fall, in ms. */
function bucketPercentile(before: Map<number, number>, after: Map<number, number>, p: number): string {
  const bounds = [...after.keys()].sort((a, b) => a - b);
  const total = (after.get(Number.POSITIVE_INFINITY) ?? 0) - (before.get(Number.POSITIVE_INFINITY) ?? 0);
  for (const bound of bounds) {
    if ((after.get(bound)! - (before.get(bound) ?? 0)) >= (p / 100) * total) return bound === Number.POSITIVE_INFINITY ? '>300000' : `<= ${bound * 1000}`;
  }
  return '?';
}

const servers: Server[] = [];
try {
  // one at a time: the first migrates the schema
  for (const serverPath of paths) servers.push(await startServer(serverPath));
  const database = await createDatabase({ kind: 'postgres', ...connection, schema, poolMax: 4, applicationName: 'subscription-bench' });
  const journal = createJournal({ database, numShards: 16 });
  const revisions = new Map<string, number>();
  /** issue time of each event, by journal position (known once its append returns) */
  const issued = new Map<bigint, number>();

  const append = async (entityId: string): Promise<void> => {
    const revision = (revisions.get(entityId) ?? 0) + 1;
    revisions.set(entityId, revision);
    const payload = toBinary(
      EventWrapperSchema,
      create(EventWrapperSchema, {
        event: { typeUrl: 'type.googleapis.com/bench.v1.Incremented', value: new Uint8Array([1, 2, 3, 4]) },
        resultingState: { typeUrl: 'type.googleapis.com/bench.v1.Counter', value: new Uint8Array([revision & 255]) },
        meta: { entityId, revisionNumber: revision, revisionDate: timestampNow() },
      }),
    );
    const at = performance.now();
    const { positions } = await journal.append({ entityId, expectedRevision: BigInt(revision - 1), events: [payload] });
    issued.set(positions[0]!, at);
  };

  /** Appends at `rate` events/s for `ms`, in 10 ms ticks. */
  const write = async (ms: number): Promise<number> => {
    const started = performance.now();
    let sent = 0;
    const pending = new Set<Promise<void>>();
    while (performance.now() - started < ms) {
      const due = Math.floor(((performance.now() - started) / 1000) * rate);
      for (; sent < due; sent++) {
        const promise = append(`bench-${sent % ENTITIES}`).finally(() => pending.delete(promise));
        pending.add(promise);
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await Promise.all(pending);
    return sent;
  };

  const clients: Client[] = [];
  /** the client of the i-th stream to `server`: 25 streams per connection */
  const clientFor = (server: Server, i: number): Client => {
    const index = Math.floor(i / STREAMS_PER_CONNECTION) * servers.length + servers.indexOf(server);
    clients[index] ??= createGrpcJsClient({
      service: ChiefOfStateService,
      address: `127.0.0.1:${server.port}`,
      // one channel (one HTTP/2 connection) per client
      channelOptions: { 'grpc.channel_id': index } as never,
    });
    return clients[index];
  };

  const rows: string[] = [];
  /** lag p99 (ms) and the load average, per fan-out */
  const verdicts: string[] = [];
  const catchUpRows: string[] = [];
  for (const n of fanOuts) for (const server of servers) {
    const cos = server.process;
    /** (offset, arrival time) of every delivery while measuring; joined with `issued` after */
    const arrivals: { offset: bigint; at: number }[] = [];
    let measuring = false;
    let delivered = 0;
    const streams = Array.from({ length: n }, (_, i) => {
      const call = subscribeAll(clientFor(server, i));
      call.on('data', (offset: bigint) => {
        delivered++;
        if (measuring) arrivals.push({ offset, at: performance.now() });
      });
      call.on('error', () => {});
      return call;
    });
    // the streams are open once an event written now reaches every one of them
    await pollUntil(async () => {
      const before = delivered;
      await append('bench-probe');
      await new Promise((resolve) => setTimeout(resolve, 50));
      return delivered - before >= n;
    }, 30_000, `${n} subscriptions open`);
    await write(1000); // warm-up
    measuring = true;
    const cpuBefore = cpuSeconds(cos.child.pid!);
    const ownCpuBefore = process.cpuUsage();
    const bucketsBefore = await serverLagBuckets(server.metricsPort);
    const deliveredBefore = delivered;
    const started = performance.now();
    const written = await write(seconds * 1000);
    await pollUntil(() => delivered - deliveredBefore >= written * n, 300_000, 'every event delivered');
    const elapsed = (performance.now() - started) / 1000;
    const bucketsAfter = await serverLagBuckets(server.metricsPort);
    const cpu = (cpuSeconds(cos.child.pid!) - cpuBefore) / elapsed;
    const ownCpuUsed = process.cpuUsage(ownCpuBefore);
    const ownCpu = (ownCpuUsed.user + ownCpuUsed.system) / 1e6 / elapsed;
    measuring = false;
    for (const call of streams) call.cancel();
    const lags: number[] = [];
    for (const { offset, at } of arrivals) {
      const sent = issued.get(offset);
      if (sent !== undefined) lags.push(at - sent);
    }
    const sorted = Float64Array.from(lags).sort();
    const row = `| ${n} | ${server.path} | ${Math.round(written / elapsed)} | ${Math.round((written * n) / elapsed)} | ${percentile(sorted, 50).toFixed(1)} | ${percentile(sorted, 99).toFixed(1)} | ${sorted.at(-1)?.toFixed(1)} | ${bucketPercentile(bucketsBefore, bucketsAfter, 50)} | ${bucketPercentile(bucketsBefore, bucketsAfter, 99)} | ${Math.round(cpu * 100)}% | ${Math.round((cpu * elapsed * 1e6) / (written * n))} | ${Math.round(ownCpu * 100)}% | ${os.loadavg()[0]!.toFixed(1)} |`;
    console.log(row);
    rows.push(row);
    const p99 = percentile(sorted, 99);
    verdicts.push(`${n} subscriber(s) (${server.path}): ${p99 < 50 ? 'met' : 'not met'} (${p99.toFixed(0)} ms, load ${os.loadavg()[0]!.toFixed(1)})`);

    // catch-up: n subscribers read the newest CATCH_UP events of the journal at once
    const total = Number((await journal.latestPosition()).toString());
    const catchUpFrom = BigInt(Math.max(0, total - CATCH_UP));
    const received = new Array<number>(n).fill(0);
    const catchUpStarted = performance.now();
    const catchUps = Array.from({ length: n }, (_, i) => {
      const call = subscribeAll(clientFor(server, i), catchUpFrom);
      call.on('data', (offset: bigint) => {
        if (offset <= BigInt(total)) received[i]!++;
      });
      call.on('error', () => {});
      return call;
    });
    const count = (await journal.readAll({ afterPosition: catchUpFrom, limit: CATCH_UP })).length;
    await pollUntil(() => received.every((r) => r >= count), 300_000, 'catch-up done', 20);
    const catchUpSeconds = (performance.now() - catchUpStarted) / 1000;
    for (const call of catchUps) call.cancel();
    const catchUpRow = `| ${n} | ${server.path} | ${count} | ${catchUpSeconds.toFixed(2)} | ${Math.round((count * n) / catchUpSeconds)} |`;
    console.log(catchUpRow);
    catchUpRows.push(catchUpRow);
  }
  for (const client of clients) client.close();
  await journal.close();
  await database.close();

  const section = [
    '<!-- subscriptions:start -->',
    '## Subscriptions (fan-out and lag)',
    '',
    `\`npx tsx tools/bench/subscription-bench.ts\` on ${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'unknown CPU'}), Node ${process.version}, ` +
      `the built cos-server on the local PostgreSQL. A writer appends ${rate} events/s (one event per append, group commit) to the journal; ` +
      'N stock grpc-js SubscribeAll streams (live, 25 per connection) in the same process as the writer, each message read as its offset only (field 10; the rest skipped, so the subscribers\' decoding does not take the cores cos-server runs on). Lag: from the append being issued ' +
      `(before its COMMIT) to a subscriber receiving the event, every (subscriber, event) over ${seconds} s after a 1 s warm-up. ` +
      'Server-side lag: cos_subscription_lag_seconds (from the event\'s written_at, its transaction\'s start, to cos-server handing it to the stream), as histogram bucket bounds. ' +
      'CPU: cos-server, and this process (the writer and every subscriber) (100% = one core). Load average: the machine\'s 1-minute load when the row was measured (other work shares the cores).',
    '',
    '| subscribers | server path | events/s written | events/s delivered | lag p50 ms | lag p99 ms | lag max ms | server-side lag p50 ms | server-side lag p99 ms | cos-server CPU | cos-server CPU per delivery (µs) | writer + subscribers CPU | load average |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows,
    '',
    `Catch-up: N subscribers at once read the newest ${CATCH_UP} events of the journal (history from the journal, page by page, pulled as the client reads).`,
    '',
    '| subscribers | server path | events each | seconds | events/s delivered |',
    '|---|---|---|---|---|',
    ...catchUpRows,
    '',
    `The target, a lag p99 under 50 ms at ${rate} events/s: ${verdicts.join('; ')}. On a machine this loaded every`,
    'process waits for a core, so the tail lags measure the scheduler as much as COS; the CPU per delivery is',
    'the figure that carries over.',
    '',
    '"events/s written" is the events written over the time until every subscriber had received them all (a',
    `backlog stretches it); the writer itself appends at ${rate}/s for ${seconds} s.`,
    '',
    'Server path: `fast` is the default, the gRPC fast path for the streams (grpc-api `server-stream-grpc.ts`): the',
    'hub hands each subscriber a page of events at a time, and the page goes out as one write of ready gRPC',
    'frames: per event the 5-byte prefix, the subscription id field (encoded once per stream) and the event\'s',
    'fields (the stored EventWrapper\'s event, state and metadata bytes under the response\'s numbers, with the',
    'offset: encoded once per event for all subscribers). `connect` is the same build with',
    '`COS_GRPC_SERVER_FAST_PATH=false`: Connect\'s adapter, a message, an envelope and a write per event, through',
    'async iterables (the same bytes on the wire: `stream-differential.spec.ts`). Both cos-server processes run',
    'side by side on the same database, measured one after the other for each fan-out.',
    '<!-- subscriptions:end -->',
  ].join('\n');
  console.log(section);
  if (writeDoc) writeBenchmarkSection('subscriptions', section);
} finally {
  for (const server of servers) await server.process.kill('SIGTERM');
  const client = new pg.Client(connection);
  await client.connect();
  await client.query(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(schema)} CASCADE`);
  await client.end();
}

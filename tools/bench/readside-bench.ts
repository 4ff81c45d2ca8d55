/**
 * Read-side benchmark, on the real PostgreSQL, with a minimal handler (a stock grpc-js
 * ReadSideHandlerService in its own process that answers successful=true at once):
 *
 *   1. ceiling: the HandleReadSide requests of a journal of N events (default 200,000), built from
 *      payloads held in memory and sent by a bare gRPC client (@chiefofstate/handler-client, the
 *      same one the engine uses) with the same parallelism as the engine (16 shards: 16
 *      sequential loops), nothing read or committed: the fastest the handler can be fed;
 *   2. catch-up: the read-side engine (@chiefofstate/read-side: journal reads, offsets committed,
 *      lease coordinator, NOTIFY) delivering the same journal from offset 0;
 *   3. lag: with the engine caught up, a steady write load (events/s, one event per append,
 *      through the journal's group commit); lag = from the append's acknowledgement (after
 *      COMMIT) to the handler's answer for that event; p50 / p99 / max.
 *
 *   npx tsx tools/bench/readside-bench.ts [--events=200000] [--rates=500,2000] [--lag-seconds=10]
 *       [--repeats=1] [--no-write]
 *
 * PostgreSQL: COS_BENCH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/postgres), in a
 * throw-away schema. Writes its section of docs/benchmarks.md between <!-- readside:start --> and
 * <!-- readside:end --> unless --no-write.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as os from 'node:os';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { benchArgs, writeBenchmarkSection } from './bench-support.js';
import { rerunWithSources } from './with-sources.js';
import type { HandleReadSideRequest } from '@chiefofstate/protocol';

rerunWithSources(import.meta.url);

const { default: pg } = await import('pg');
const { create, toBinary } = await import('@bufbuild/protobuf');
const { AnySchema, timestampNow } = await import('@bufbuild/protobuf/wkt');
const { createReadSideClient } = await import('@chiefofstate/handler-client');
const { createJournal, JOURNAL_NOTIFY_CHANNEL, journalMigrations } = await import('@chiefofstate/journal');
const { createOffsetStore } = await import('@chiefofstate/offset-store');
const { createDatabase, mergeMigrations, migrateToLatest } = await import('@chiefofstate/postgres');
const { EventWrapperSchema, MetaDataSchema } = await import('@chiefofstate/protocol');
const { createReadSideEngine, entityIdHeader, toReadSideRequest } = await import('@chiefofstate/read-side');
const { readSideMigrations } = await import('@chiefofstate/composition');
const { createLeaseCoordinator } = await import('@chiefofstate/leases');


const args = benchArgs();
const totalEvents = Number(args.get('events') ?? 200_000);
const rates = (args.get('rates') ?? '500,2000').split(',').map(Number);
const lagSeconds = Number(args.get('lag-seconds') ?? 10);
const repeats = Number(args.get('repeats') ?? 1);
const commitIntervalMs = args.has('commit-interval') ? Number(args.get('commit-interval')) : undefined;
const writeDoc = !args.has('no-write');
const serverUrl = new URL(process.env['COS_BENCH_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres');

const NUM_SHARDS = 16;
const EVENTS_PER_ENTITY = 20;
const READ_SIDE = 'bench';

const connection = (schema: string) => ({
  host: serverUrl.hostname,
  port: Number(serverUrl.port || 5432),
  user: decodeURIComponent(serverUrl.username || 'postgres'),
  password: decodeURIComponent(serverUrl.password),
  database: serverUrl.pathname.slice(1) || 'postgres',
  schema,
});

/** An EventWrapper like a real one: ~100-byte event and state, meta with a timestamp. */
function payload(entityId: string, revision: number): Uint8Array {
  return toBinary(
    EventWrapperSchema,
    create(EventWrapperSchema, {
      event: create(AnySchema, { typeUrl: 'type.googleapis.com/bench.Deposited', value: randomBytes(100) }),
      resultingState: create(AnySchema, { typeUrl: 'type.googleapis.com/bench.Account', value: randomBytes(100) }),
      meta: create(MetaDataSchema, { entityId, revisionNumber: revision, revisionDate: timestampNow() }),
    }),
  );
}

const cpuMicros = (usage: NodeJS.CpuUsage) => usage.user + usage.system;
const median = (xs: readonly number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const percentile = (sorted: readonly number[], p: number) =>
  sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
const num = (n: number) => Math.round(n).toLocaleString('en-US');

// ---------------------------------------------------------------- set-up
const schema = `bench_rs_${randomBytes(5).toString('hex')}`;
const { schema: _unused, ...adminOptions } = connection('public');
const admin = new pg.Client(adminOptions);
await admin.connect();
await admin.query(`CREATE SCHEMA ${schema}`);

const handlerProcess = spawn(process.execPath, ['--conditions=@chiefofstate/source', '--import', 'tsx', fileURLToPath(new URL('./readside-bench/handler.ts', import.meta.url))], {
  stdio: ['pipe', 'pipe', 'inherit'],
});
let handlerOut = '';
const handlerWaiters = new Set<() => void>();
handlerProcess.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
  handlerOut += chunk;
  for (const wake of [...handlerWaiters]) wake();
});
const handlerLine = (pattern: RegExp) =>
  new Promise<RegExpMatchArray>((resolve) => {
    const check = () => {
      const matches = [...handlerOut.matchAll(new RegExp(pattern.source, 'g'))];
      const last = matches.at(-1);
      if (last) {
        handlerWaiters.delete(check);
        handlerOut = '';
        resolve(last);
      }
    };
    handlerWaiters.add(check);
    check();
  });
const handlerPort = Number((await handlerLine(/listening (\d+)/))[1]);
const handlerCalls = async () => {
  handlerProcess.stdin!.write('count\n');
  return Number((await handlerLine(/calls (\d+)\n/))[1]);
};

const database = await createDatabase({ kind: 'postgres', ...connection(schema), poolMax: 5, applicationName: 'readside-bench' });
await migrateToLatest({ database, migrations: mergeMigrations(journalMigrations, readSideMigrations) });
const journal = createJournal({ database, numShards: NUM_SHARDS });
const client = createReadSideClient({ host: '127.0.0.1', port: handlerPort, timeoutMs: 10_000 });

const cpu = os.cpus();
console.error(`read-side benchmark: ${num(totalEvents)} events, ${NUM_SHARDS} shards, ${cpu.length} cores (${cpu[0]?.model ?? '?'})`);

try {
  // -------------------------------------------------------------- the journal
  const fillStarted = performance.now();
  const entities = Math.ceil(totalEvents / EVENTS_PER_ENTITY);
  let next = 0;
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      for (let e = next++; e < entities; e = next++) {
        const id = `account-${e}`;
        for (let first = 1; first <= EVENTS_PER_ENTITY; first += 10) {
          const events = Array.from({ length: 10 }, (_, k) => payload(id, first + k));
          await journal.append({ entityId: id, expectedRevision: BigInt(first - 1), events });
        }
      }
    }),
  );
  const written = entities * EVENTS_PER_ENTITY;
  console.error(`journal: ${num(written)} events written in ${((performance.now() - fillStarted) / 1000).toFixed(1)} s`);

  // -------------------------------------------------------------- 1. ceiling
  // The same requests the engine sends (payload decoded into the request, read_side_id, the same
  // metadata), built per call from the payloads held in memory, as the engine builds them: the
  // loops do everything the engine does per event except reading the journal and committing.
  const perShard: { payload: Uint8Array; entityId: string }[][] = [];
  for (let shard = 0; shard < NUM_SHARDS; shard++) {
    const list: { payload: Uint8Array; entityId: string }[] = [];
    for (let after = 0n; ; ) {
      const page = await journal.readShard({ shard, afterPosition: after, limit: 10_000 });
      if (page.length === 0) break;
      for (const event of page) list.push({ payload: event.payload, entityId: event.entityId });
      after = page.at(-1)!.position;
    }
    perShard.push(list);
  }
  const ceilings: number[] = [];
  const ceilingCpu: number[] = [];
  const runCeiling = async () => {
    const before = await handlerCalls();
    const cpuBefore = process.cpuUsage();
    const started = performance.now();
    await Promise.all(
      perShard.map(async (list, shard) => {
        for (const { payload, entityId } of list) {
          const headers = { 'x-cos-entity-id': entityIdHeader(entityId), 'x-cos-event-tag': String(shard) };
          await client.handleReadSide(toReadSideRequest(payload, READ_SIDE), { headers, timeoutMs: 10_000 });
        }
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    const cpu = cpuMicros(process.cpuUsage(cpuBefore)) / written;
    const calls = (await handlerCalls()) - before;
    if (calls !== written) throw new Error(`ceiling: the handler saw ${calls} calls, expected ${written}`);
    ceilings.push(written / seconds);
    ceilingCpu.push(cpu);
    console.error(`ceiling: ${num(written / seconds)} events/s (${seconds.toFixed(1)} s), ${cpu.toFixed(0)} µs CPU per event in this process`);
  };

  // -------------------------------------------------------------- 2. catch-up
  const committedAt = new Map<string, number>();
  const deliveredAt = new Map<string, number>();
  let tracking = false;
  const handler = {
    async handleReadSide(request: HandleReadSideRequest, call?: Parameters<typeof client.handleReadSide>[1]) {
      const response = await client.handleReadSide(request, call);
      if (tracking) deliveredAt.set(`${request.meta?.entityId}@${request.meta?.revisionNumber}`, performance.now());
      return response;
    },
  };
  const offsets = createOffsetStore({ database });
  const catchUps: { eventsPerSecond: number; seconds: number; cpu: number }[] = [];
  let engine: ReturnType<typeof createReadSideEngine> | undefined;
  // ceiling and catch-up take turns, so neither profits alone from a warmer process or a quieter machine
  for (let r = 0; r < repeats; r++) {
    await runCeiling();
    await engine?.close();
    await offsets.reset(READ_SIDE);
    const heads = await Promise.all(Array.from({ length: NUM_SHARDS }, (_, shard) => journal.latestPosition(shard)));
    const before = await handlerCalls();
    engine = createReadSideEngine({
      readSides: [{ readSideId: READ_SIDE, handler, timeoutMs: 10_000, failurePolicy: 'REPLAY_STOP', autoStart: true }],
      numShards: NUM_SHARDS,
      journal,
      offsets,
      ownership: createLeaseCoordinator({ database }),
      journalNotifications: { listen: (channel, listener) => database.listen(channel, listener), channel: JOURNAL_NOTIFY_CHANNEL },
      controlNotifications: { listen: (channel, listener) => database.listen(channel, listener) },
      ...(commitIntervalMs !== undefined ? { commitIntervalMs } : {}),
    });
    const cpuBefore = process.cpuUsage();
    const started = performance.now();
    await engine.start();
    for (;;) {
      const stored = await offsets.list(READ_SIDE, NUM_SHARDS);
      if (stored.every((o, shard) => o.position >= heads[shard]!)) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const seconds = (performance.now() - started) / 1000;
    const cpu = cpuMicros(process.cpuUsage(cpuBefore)) / written;
    const calls = (await handlerCalls()) - before;
    if (calls < written) throw new Error(`catch-up: the handler saw ${calls} calls, expected ${written}`);
    catchUps.push({ eventsPerSecond: written / seconds, seconds, cpu });
    console.error(
      `catch-up: ${num(written / seconds)} events/s (${seconds.toFixed(1)} s, ${calls - written} repeated), ${cpu.toFixed(0)} µs CPU per event in this process`,
    );
  }

  // -------------------------------------------------------------- 3. lag under steady writes
  const lags: { rate: number; achieved: number; events: number; p50: number; p99: number; max: number }[] = [];
  tracking = true;
  const live = Array.from({ length: 2_000 }, (_, i) => ({ id: `live-${i}`, revision: 0 }));
  let cursor = 0;
  for (const rate of rates) {
    committedAt.clear();
    deliveredAt.clear();
    const perTick = rate / 100; // a tick every 10 ms
    const pending: Promise<void>[] = [];
    const started = performance.now();
    let due = 0;
    let sent = 0;
    while (performance.now() - started < lagSeconds * 1000) {
      due += perTick;
      for (; sent < Math.floor(due); sent++) {
        const entity = live[cursor++ % live.length]!;
        const revision = ++entity.revision;
        const key = `${entity.id}@${revision}`;
        // an entity is written again only after the lap of 2,000: its previous append is done
        pending.push(
          journal
            .append({ entityId: entity.id, expectedRevision: BigInt(revision - 1), events: [payload(entity.id, revision)] })
            .then(() => void committedAt.set(key, performance.now())),
        );
      }
      const nextTick = started + ((sent / rate) * 1000);
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, nextTick - performance.now())));
    }
    await Promise.all(pending);
    const elapsed = (performance.now() - started) / 1000;
    const deadline = performance.now() + 30_000;
    while (deliveredAt.size < committedAt.size && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    const values = [...committedAt].map(([key, at]) => (deliveredAt.get(key) ?? Infinity) - at).sort((a, b) => a - b);
    const lag = {
      rate,
      achieved: sent / elapsed,
      events: sent,
      p50: percentile(values, 50),
      p99: percentile(values, 99),
      max: values.at(-1) ?? NaN,
    };
    lags.push(lag);
    console.error(`lag at ${num(rate)} events/s (achieved ${num(lag.achieved)}): p50 ${lag.p50.toFixed(1)} ms, p99 ${lag.p99.toFixed(1)} ms, max ${lag.max.toFixed(1)} ms`);
  }
  await engine?.close();

  // -------------------------------------------------------------- report
  // Each catch-up is compared with the ceiling run just before it (the machine's load drifts).
  const ratios = catchUps.map((c, i) => c.eventsPerSecond / ceilings[i]!);
  const pct = (x: number) => `${(x * 100).toFixed(0)}%`;
  const lines = [
    `| measurement | result |`,
    `|---|--:|`,
    `| ceiling: bare gRPC client, 16 parallel loops, same requests | ${ceilings.map(num).join(', ')} events/s (${ceilingCpu.map((c) => c.toFixed(0)).join(', ')} µs CPU per event) |`,
    `| catch-up: read-side engine, 16 shards, from offset 0 | ${catchUps.map((c) => num(c.eventsPerSecond)).join(', ')} events/s (${catchUps.map((c) => c.cpu.toFixed(0)).join(', ')} µs CPU per event) |`,
    `| catch-up / ceiling, run by run | ${ratios.map(pct).join(', ')} (median ${pct(median(ratios))}) |`,
    ...lags.map(
      (l) =>
        `| lag at ${num(l.rate)} events/s written (${num(l.events)} events) | p50 ${l.p50.toFixed(1)} ms, p99 ${l.p99.toFixed(1)} ms, max ${l.max.toFixed(1)} ms |`,
    ),
  ];
  console.log(lines.join('\n'));

  if (writeDoc) {
    const section = [
      '<!-- readside:start -->',
      '## Read sides',
      '',
      `Run: \`npx tsx tools/bench/readside-bench.ts\` (options: \`--events=${totalEvents} --rates=${rates.join(',')} --lag-seconds=${lagSeconds} --repeats=${repeats}\`;`,
      'server from `COS_BENCH_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`, in a throw-away schema).',
      '',
      `Machine: ${cpu[0]?.model ?? 'unknown CPU'}, ${cpu.length} cores shared by PostgreSQL, the benchmark process (engine,`,
      `client, writer) and the handler process, ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM, ${os.type()} ${os.release()}.`,
      '',
      `- Journal: ${num(written)} events (${num(entities)} entities × ${EVENTS_PER_ENTITY}, ~300-byte EventWrappers), 16 shards.`,
      '- Handler: a stock `@grpc/grpc-js` ReadSideHandlerService in its own process answering',
      '  `successful: true` at once (tools/bench/readside-bench/handler.ts).',
      '- Ceiling: the same HandleReadSide requests and metadata, built per call from the payloads',
      '  held in memory exactly as the engine builds them, sent by `@chiefofstate/handler-client` (the',
      '  client the engine uses: one HTTP/2 connection) from 16 sequential loops, one per shard;',
      '  nothing read from the journal, nothing committed.',
      '- Catch-up: `@chiefofstate/read-side` from offset 0 (journal reads in batches of 500,',
      '  pipelined compare-and-set offset commits, lease coordinator, one pool of 5 connections).',
      '- Lag: the engine caught up and running; one event per append at the given rate through the',
      '  journal (group commit), from the append being acknowledged to the handler having answered.',
      `- ${repeats} run(s) of each, ceiling and catch-up taking turns; each catch-up is compared with`,
      '  the ceiling run just before it, since the load of the shared machine drifts. CPU per event:',
      '  user + system time of the benchmark process (client, and for the catch-up the engine) only.',
      `- ${new Date().toISOString().slice(0, 10)}, Node ${process.version}.`,
      '',
      ...lines,
      '<!-- readside:end -->',
    ].join('\n');
    writeBenchmarkSection('readside', section);
  }
} finally {
  await client.close();
  await database.close();
  handlerProcess.stdin!.end();
  await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await admin.end();
}

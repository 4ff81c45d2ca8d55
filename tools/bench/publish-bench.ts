/**
 * Publishing benchmark, on the real PostgreSQL, NATS JetStream (127.0.0.1:4222) and RabbitMQ
 * (127.0.0.1:5672), each run with its own stream / queue, deleted after:
 *
 *   1. bare client: the messages of a journal of N events (default 20,000), built in memory, sent
 *      by the broker's own client (@nats-io/jetstream `js.publish`, amqplib confirm channel), 16
 *      shards side by side, in three ways (BARE_MODES), nothing read or committed, in this process;
 *   2. COS: the read-side engine with the publisher sink (@chiefofstate/publisher) publishing the
 *      same journal from offset 0 (journal reads, messages built, acknowledgements, offsets
 *      committed), in a process of its own (publish-bench/cos-publisher.ts) on the built packages.
 *
 * Each cell: messages per second and the CPU time of the publishing process per message. A
 * warm-up round (every column, not counted) comes first, so no measured run is a cold one.
 *
 *   npx tsx tools/bench/publish-bench.ts [--events=20000] [--repeats=1] [--warmup=1] [--brokers=nats,rabbitmq] [--no-write]
 *       [--profile=DIR]   (a CPU profile of each COS run: DIR/<publisher id>.cpuprofile)
 *       [--node-options="--trace-gc ..."]   (node flags of the COS process)
 *
 * Build first (`npx nx run-many -t build`): the benchmark runs the built packages, like
 * production. Writes its section of docs/benchmarks.md between <!-- publish:start --> and
 * <!-- publish:end --> unless --no-write.
 */
import { fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { benchArgs, benchPostgresUrl, connectionOf, median, writeBenchmarkSection } from './bench-support.js';
import type { ChildRequest, ChildResult } from './publish-bench/cos-publisher.js';

const BUILT = fileURLToPath(new URL('../../packages/read-side/dist/index.js', import.meta.url));
if (!existsSync(BUILT)) {
  console.error(`${BUILT} is missing: run \`npx nx run-many -t build\` first`);
  process.exit(2);
}

const { default: pg } = await import('pg');
const { create, toBinary } = await import('@bufbuild/protobuf');
const { AnySchema, timestampNow } = await import('@bufbuild/protobuf/wkt');
const { jetstream, jetstreamManager } = await import('@nats-io/jetstream');
const { connect: natsConnect, headers: natsHeaders } = await import('@nats-io/transport-node');
const amqplib = await import('amqplib');
const { createJournal, journalMigrations } = await import('@chiefofstate/journal');
const { createDatabase, mergeMigrations, migrateToLatest } = await import('@chiefofstate/postgres');
const { EventWrapperSchema, MetaDataSchema } = await import('@chiefofstate/protocol');
const { rabbitMqProperties, toBrokerMessage } = await import('@chiefofstate/publisher');
const { readSideMigrations } = await import('@chiefofstate/composition');

const args = benchArgs();
const totalEvents = Number(args.get('events') ?? 20_000);
const repeats = Number(args.get('repeats') ?? 1);
const warmups = Number(args.get('warmup') ?? 1);
const writeDoc = !args.has('no-write');
const brokers = (args.get('brokers') ?? 'nats,rabbitmq').split(',') as ('nats' | 'rabbitmq')[];
const serverUrl = benchPostgresUrl();
const NATS_URL = 'nats://127.0.0.1:4222';
const AMQP_URL = 'amqp://guest:guest@127.0.0.1:5672';
const NUM_SHARDS = 16;
const EVENTS_PER_ENTITY = 20;
const num = (n: number) => Math.round(n).toLocaleString('en-US');

const tag = randomBytes(4).toString('hex');
const schema = `bench_pub_${tag}`;
const admin = new pg.Client(connectionOf(serverUrl));
await admin.connect();
await admin.query(`CREATE SCHEMA ${schema}`);
const database = await createDatabase({
  kind: 'postgres',
  ...connectionOf(serverUrl),
  schema,
  poolMax: 5,
  applicationName: 'publish-bench',
});
await migrateToLatest({ database, migrations: mergeMigrations(journalMigrations, readSideMigrations) });
const journal = createJournal({ database, numShards: NUM_SHARDS });
const nc = await natsConnect({ servers: NATS_URL });
// the bare client tuned like the sink's connection (no Error captured per request)
const bareNc = await natsConnect({ servers: NATS_URL, noAsyncTraces: true });
const jsm = await jetstreamManager(nc);
const amqp = await amqplib.connect(AMQP_URL);
const amqpAdmin = await amqp.createChannel();
const cpu = os.cpus();
console.error(`publishing benchmark: ${num(totalEvents)} events, ${NUM_SHARDS} shards, ${cpu.length} cores (${cpu[0]?.model ?? '?'})`);

type Broker = 'nats' | 'rabbitmq';
type Rate = { readonly rate: number; readonly cpuUs: number };
type BareMessage = ReturnType<typeof toBrokerMessage>;
/**
 * How the bare client sends each shard's messages (16 shards side by side):
 * - ordered: batches of BATCH in journal order, the messages of one key one after the other (each
 *   once the previous was acknowledged), keys side by side: COS's guarantee, so the target's yardstick;
 * - pipelined: batches of BATCH, every acknowledgement outstanding at once (no per-key order: the
 *   broker's ceiling for reference);
 * - sequential: one message at a time (what a publisher stream did before batches);
 * - overlapped: ordered, with each batch started while the previous one is still being acknowledged
 *   (two in flight, a key's messages waiting for its messages in the previous batch): what the COS
 *   publisher does, by hand.
 */
const BARE_MODES = ['ordered', 'pipelined', 'sequential', 'overlapped'] as const;
type BareMode = (typeof BARE_MODES)[number];
/** events per journal read of a publisher stream (the engine's batchSize) and per bare batch */
const BATCH = 500;
let closeChild = () => {};
const rows: { broker: Broker; sequential: Rate; ordered: Rate; pipelined: Rate; overlapped: Rate; cos: Rate; vsOrdered: number; vsOverlapped: number; vsPipelined: number; runs: number[] }[] = [];
try {
  const entities = Math.ceil(totalEvents / EVENTS_PER_ENTITY);
  let next = 0;
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      for (let e = next++; e < entities; e = next++) {
        const id = `account-${e}`;
        for (let first = 1; first <= EVENTS_PER_ENTITY; first += 10) {
          const events = Array.from({ length: 10 }, (_, k) =>
            toBinary(
              EventWrapperSchema,
              create(EventWrapperSchema, {
                event: create(AnySchema, { typeUrl: 'type.googleapis.com/bench.Deposited', value: randomBytes(100) }),
                resultingState: create(AnySchema, { typeUrl: 'type.googleapis.com/bench.Account', value: randomBytes(100) }),
                meta: create(MetaDataSchema, { entityId: id, revisionNumber: first + k, revisionDate: timestampNow() }),
              }),
            ),
          );
          await journal.append({ entityId: id, expectedRevision: BigInt(first - 1), events });
        }
      }
    }),
  );
  const written = entities * EVENTS_PER_ENTITY;
  const readCpu = process.cpuUsage();
  const perShard: { position: bigint; shard: number; payload: Uint8Array }[][] = [];
  for (let shard = 0; shard < NUM_SHARDS; shard++) {
    const list: { position: bigint; shard: number; payload: Uint8Array }[] = [];
    for (let after = 0n; ; ) {
      const page = await journal.readShard({ shard, afterPosition: after, limit: 10_000 });
      if (page.length === 0) break;
      for (const event of page) list.push({ position: event.position, shard, payload: event.payload });
      after = page.at(-1)!.position;
    }
    perShard.push(list);
  }
  const readUsage = process.cpuUsage(readCpu);
  const readCpuUs = (readUsage.user + readUsage.system) / written;
  const heads = await Promise.all(Array.from({ length: NUM_SHARDS }, (_, shard) => journal.latestPosition(shard)));
  // the bare clients send ready messages: building them is COS's work, not the broker's
  const messagesPerShard = perShard.map((list) => list.map((event) => toBrokerMessage(event)));
  console.error(`journal: ${num(written)} events; reading them back (pages of 10,000): ${readCpuUs.toFixed(1)} µs CPU per event`);

  /** A fresh destination per run; returns its sink, a bare publish of one message, a count and a cleanup. */
  const destination = async (broker: Broker, run: string) => {
    if (broker === 'nats') {
      const stream = `bench_pub_${tag}_${run}`;
      const subject = `bench-pub.${stream}`;
      await jsm.streams.add({ name: stream, subjects: [subject] });
      const js = jetstream(bareNc);
      return {
        sink: { kind: 'nats', url: NATS_URL, subject } as const,
        bare: async (message: BareMessage) => {
          const h = natsHeaders();
          for (const [k, v] of Object.entries(message.headers)) h.set(k, v);
          await js.publish(subject, message.payload, { msgID: message.id, headers: h });
        },
        count: async () => (await jsm.streams.info(stream)).state.messages,
        close: () => jsm.streams.delete(stream).then(() => {}),
      };
    }
    const queue = `bench_pub_${tag}_${run}`;
    await amqpAdmin.assertQueue(queue, { durable: false });
    const channel = await amqp.createConfirmChannel();
    return {
      sink: { kind: 'rabbitmq', url: AMQP_URL, queue } as const,
      bare: (message: BareMessage) =>
        new Promise<void>((resolve, reject) =>
          // the properties the sink sends (message id, persistent, type, content type, headers)
          channel.publish('', queue, Buffer.from(message.payload), rabbitMqProperties(message), (error: unknown) =>
            error ? reject(error as Error) : resolve(),
          ),
        ),
      count: async () => (await amqpAdmin.checkQueue(queue)).messageCount,
      close: async () => {
        await channel.close();
        await amqpAdmin.deleteQueue(queue);
      },
    };
  };

  /** One shard's messages the way `mode` sends them (see BARE_MODES). */
  const sendShard = async (messages: readonly BareMessage[], mode: BareMode, bare: (message: BareMessage) => Promise<void>) => {
    if (mode === 'sequential') {
      for (const message of messages) await bare(message);
      return;
    }
    if (mode === 'overlapped') {
      const tails = new Map<string, Promise<void>>();
      let previous: Promise<unknown> = Promise.resolve();
      for (let from = 0; from < messages.length; from += BATCH) {
        const byKey = new Map<string, BareMessage[]>();
        for (const message of messages.slice(from, from + BATCH)) byKey.set(message.key, [...(byKey.get(message.key) ?? []), message]);
        const chains = [...byKey].map(([key, list]) => {
          const chain = (async () => {
            await tails.get(key);
            for (const message of list) await bare(message);
          })();
          tails.set(key, chain);
          return chain;
        });
        await previous; // two batches in flight at most
        previous = Promise.all(chains);
      }
      await previous;
      return;
    }
    for (let from = 0; from < messages.length; from += BATCH) {
      const batch = messages.slice(from, from + BATCH);
      if (mode === 'pipelined') {
        await Promise.all(batch.map(bare));
        continue;
      }
      const byKey = new Map<string, BareMessage[]>();
      for (const message of batch) byKey.set(message.key, [...(byKey.get(message.key) ?? []), message]);
      await Promise.all(
        [...byKey.values()].map(async (list) => {
          for (const message of list) await bare(message);
        }),
      );
    }
  };

  /** events/s and CPU of this process per event (µs) of one timed run. */
  const timed = async (run: () => Promise<void>) => {
    const cpuBefore = process.cpuUsage();
    const started = performance.now();
    await run();
    const seconds = (performance.now() - started) / 1000;
    const used = process.cpuUsage(cpuBefore);
    return { rate: written / seconds, cpuUs: (used.user + used.system) / written };
  };

  // the COS publisher's process, up for every run (see publish-bench/cos-publisher.ts)
  const child = fork(fileURLToPath(new URL('./publish-bench/cos-publisher.ts', import.meta.url)), [], {
    execArgv: ['--import', 'tsx', ...(args.get('node-options')?.split(' ').filter(Boolean) ?? [])],
    env: {
      ...process.env,
      PUBLISH_BENCH_POSTGRES_URL: serverUrl.toString(),
      PUBLISH_BENCH_SCHEMA: schema,
      PUBLISH_BENCH_SHARDS: String(NUM_SHARDS),
      PUBLISH_BENCH_BATCH: String(BATCH),
      PUBLISH_BENCH_EVENTS: String(written),
      ...(args.has('profile') ? { PUBLISH_BENCH_PROFILE: path.resolve(args.get('profile') ?? '.') } : {}),
    },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  closeChild = () => child.send({ type: 'exit' } satisfies ChildRequest);
  const answer = () =>
    new Promise<ChildResult | { type: 'ready' }>((resolve, reject) => {
      const exited = (code: number | null) => reject(new Error(`the COS publisher process exited (${code})`));
      child.once('exit', exited);
      child.once('message', (message: ChildResult | { type: 'ready' }) => {
        child.off('exit', exited);
        resolve(message);
      });
    });
  await answer();
  /** events/s and the child's CPU per event (µs) of one COS run. */
  const cosRun = async (request: ChildRequest): Promise<Rate> => {
    const reply = answer();
    child.send(request);
    const result = await reply;
    if (result.type !== 'result') throw new Error(`COS publisher: ${result.type === 'error' ? result.message : 'no result'}`);
    return { rate: written / result.seconds, cpuUs: result.cpuMicros / written };
  };

  for (const broker of brokers) {
    const results = new Map<string, { rate: number; cpuUs: number }[]>();
    const record = (what: string, result: { rate: number; cpuUs: number }) => results.set(what, [...(results.get(what) ?? []), result]);
    for (let r = -warmups; r < repeats; r++) {
      const round = r < 0 ? `w${-r}` : String(r);
      const measured = new Map<string, Rate>();
      for (const mode of BARE_MODES) {
        const bareTarget = await destination(broker, `${mode}${round}`);
        measured.set(mode, await timed(() => Promise.all(messagesPerShard.map((messages) => sendShard(messages, mode, bareTarget.bare))).then(() => {})));
        if ((await bareTarget.count()) !== written) throw new Error(`${broker} bare ${mode}: message count differs from ${written}`);
        await bareTarget.close();
      }

      // COS: the engine and the publisher sink from offset 0, in its own process
      const target = await destination(broker, `cos${round}`);
      measured.set('cos', await cosRun({ type: 'run', publisherId: `bench-${broker}-${round}`, sink: target.sink, heads: heads.map(String) }));
      const count = await target.count();
      if (count < written) throw new Error(`${broker} COS: ${count} messages, expected ${written}`);
      await target.close();
      console.error(
        `${broker}${r < 0 ? ' (warm-up, not counted)' : ''}: ${[...measured].map(([what, x]) => `${what} ${num(x.rate)}/s ${x.cpuUs.toFixed(0)} µs`).join(', ')}`,
      );
      if (r >= 0) for (const [what, x] of measured) record(what, x);
    }
    const med = (what: string) => ({
      rate: median(results.get(what)!.map((x) => x.rate)),
      cpuUs: median(results.get(what)!.map((x) => x.cpuUs)),
    });
    // each run's COS against the bare clients of the same run (moments apart), then the median
    const ratio = (bare: BareMode) => median(results.get('cos')!.map((cos, r) => cos.rate / results.get(bare)![r]!.rate));
    rows.push({
      broker,
      sequential: med('sequential'),
      ordered: med('ordered'),
      pipelined: med('pipelined'),
      overlapped: med('overlapped'),
      cos: med('cos'),
      vsOrdered: ratio('ordered'),
      vsPipelined: ratio('pipelined'),
      vsOverlapped: ratio('overlapped'),
      runs: results.get('cos')!.map((cos, r) => cos.rate / results.get('ordered')![r]!.rate),
    });
  }

  const pct = (x: number) => `${(x * 100).toFixed(0)}%`;
  const cell = (x: Rate) => `${num(x.rate)} (${x.cpuUs.toFixed(0)} µs)`;
  const lines = [
    '| broker | bare, ordered | bare, overlapped | bare, pipelined | bare, one at a time | COS publisher | COS / bare ordered | COS / bare overlapped | COS / bare pipelined |',
    '|---|--:|--:|--:|--:|--:|--:|--:|--:|',
    ...rows.map(
      (row) =>
        `| ${row.broker === 'nats' ? 'NATS JetStream' : 'RabbitMQ (confirms)'} | ${cell(row.ordered)} | ${cell(row.overlapped)} | ${cell(row.pipelined)} | ${cell(row.sequential)} | ${cell(row.cos)} | ${pct(row.vsOrdered)} | ${pct(row.vsOverlapped)} | ${pct(row.vsPipelined)} |`,
    ),
  ];
  const spread = rows.map(
    (row) =>
      `- ${row.broker === 'nats' ? 'NATS' : 'RabbitMQ'}, COS / bare ordered in each run: ${row.runs.map(pct).join(', ')} ` +
      `(${row.runs.filter((x) => x >= 0.7).length} of ${row.runs.length} at 70% or more).`,
  );
  lines.push('', ...spread);
  console.log(lines.join('\n'));
  if (writeDoc) {
    writeBenchmarkSection(
      'publish',
      [
        '<!-- publish:start -->',
        '## Publishing to brokers',
        '',
        `Run: \`npx nx run-many -t build && npx tsx tools/bench/publish-bench.ts\` (options: \`--events=${totalEvents} --repeats=${repeats}\`; PostgreSQL from`,
        '`COS_BENCH_POSTGRES_URL`; NATS JetStream on 127.0.0.1:4222 and RabbitMQ on 127.0.0.1:5672, each run on a stream /',
        'queue of its own, deleted after).',
        '',
        `Machine: ${cpu[0]?.model ?? 'unknown CPU'}, ${cpu.length} cores shared by PostgreSQL, both brokers, the benchmark process and`,
        `other work (1-minute load average ${os.loadavg()[0]!.toFixed(1)} at the end of the run).`,
        '',
        `- Journal: ${num(written)} events (~300-byte EventWrappers, ${EVENTS_PER_ENTITY} per entity), ${NUM_SHARDS} shards.`,
        `- Bare client: the same messages (ids, headers, AMQP properties, payload), built beforehand, from the broker's own client`,
        `  (\`@nats-io/jetstream\` \`js.publish\`, an amqplib confirm channel), ${NUM_SHARDS} shards side by side, nothing read`,
        `  or committed, in the benchmark process. *Ordered*: batches of ${BATCH} in journal order, the messages of one key one`,
        '  after the other (each once the previous was acknowledged), keys side by side: the guarantee COS gives, so the',
        '  yardstick of the 0.7x target. *Overlapped*: ordered, each batch started while the previous one is still being',
        '  acknowledged (two in flight, a key waiting for its messages in the previous batch): what the COS publisher does,',
        `  by hand. *Pipelined*: batches of ${BATCH} with every acknowledgement outstanding (no per-key order). *One at a`,
        '  time*: each shard waits for each acknowledgement.',
        `- COS: \`@chiefofstate/read-side\` with the \`@chiefofstate/publisher\` sink from offset 0 (journal reads of ${BATCH}`,
        '  events, two batches per shard in the sink at once, messages built, acknowledgements awaited, offsets committed),',
        '  until every shard\'s offset is committed, in a process of its own on the built packages (so neither side\'s heap or',
        '  JIT state weighs on the other). Its NATS sink takes JetStream\'s acknowledgements on an inbox of its own (async',
        '  publishing) where the bare client makes a `js.publish` request per message.',
        '- Cells: messages (events) per second, and in brackets the CPU time per message of the publishing process (the',
        '  bare client, or the whole COS publisher: engine, journal client, sink); PostgreSQL and the broker not counted.',
        `  Reading the journal alone (rows parsed by node-postgres) took ${readCpuUs.toFixed(0)} µs per event in this run (measured while`,
        '  the script reads it back, in pages of 10,000, whose rows live long enough to cost more garbage collection than',
        '  the publisher\'s pages of 500).',
        `- A warm-up round first (not counted), then medians of ${repeats} run(s), each run measuring every column one after`,
        `  the other; the ratios are the medians of each run's ratio. ${new Date().toISOString().slice(0, 10)}, Node ${process.version}.`,
        '',
        ...lines,
        '',
        '- History: before batches (one event at a time, each payload decoded twice, two stack traces per NATS publish), on',
        '  2026-12-05 at load 6: NATS 33% and RabbitMQ 61% of the bare ordered client; with batches, one in flight per shard,',
        '  and js.publish: NATS 69-79%, RabbitMQ 58-88% across runs (2026-12-05).',
        '- What the COS publisher spends of its own per message (measured with a sink that acknowledges at once, in this',
        '  script\'s COS process with --profile): reading the journal ~2 µs, the messages (envelope read, headers) ~1.5 µs,',
        '  the engine and commits ~1 µs, with the garbage collection they cause. On 2 cores shared with the broker and',
        '  PostgreSQL that is what separates it from a bare client sending messages prepared in memory; the events of one',
        `  entity go one acknowledgement apart (here ${EVENTS_PER_ENTITY} per entity), so journals with many entities per batch publish faster.`,
        '<!-- publish:end -->',
      ].join('\n'),
    );
  }
} finally {
  closeChild();
  await nc.close();
  await bareNc.close();
  await amqp.close().catch(() => {});
  await database.close();
  await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await admin.end();
}

/**
 * Publishing benchmark, on the real PostgreSQL, NATS JetStream (127.0.0.1:4222) and RabbitMQ
 * (127.0.0.1:5672), each run with its own stream / queue, deleted after:
 *
 *   1. bare client: the messages of a journal of N events (default 20,000), built in memory, sent
 *      by the broker's own client (@nats-io/jetstream `js.publish`, amqplib confirm channel) with
 *      the engine's parallelism (16 shards: 16 loops, each waiting for the acknowledgement of its
 *      message before the next, as a publisher stream does), nothing read or committed;
 *   2. COS: the read-side engine with the publisher sink (@chiefofstate/publisher) publishing the
 *      same journal from offset 0: journal reads, messages built, acknowledgements, offsets
 *      committed.
 *
 *   npx tsx tools/bench/publish-bench.ts [--events=20000] [--repeats=1] [--no-write]
 *
 * Writes its section of docs/benchmarks.md between <!-- publish:start --> and <!-- publish:end -->
 * unless --no-write.
 */
import { randomBytes } from 'node:crypto';
import * as os from 'node:os';
import { performance } from 'node:perf_hooks';
import { benchArgs, median, writeBenchmarkSection } from './bench-support.js';
import { rerunWithSources } from './with-sources.js';

rerunWithSources(import.meta.url);

const { default: pg } = await import('pg');
const { create, toBinary } = await import('@bufbuild/protobuf');
const { AnySchema, timestampNow } = await import('@bufbuild/protobuf/wkt');
const { jetstream, jetstreamManager } = await import('@nats-io/jetstream');
const { connect: natsConnect, headers: natsHeaders } = await import('@nats-io/transport-node');
const amqplib = await import('amqplib');
const { createJournal, JOURNAL_NOTIFY_CHANNEL, journalMigrations } = await import('@chiefofstate/journal');
const { createOffsetStore } = await import('@chiefofstate/offset-store');
const { createDatabase, mergeMigrations, migrateToLatest } = await import('@chiefofstate/postgres');
const { EventWrapperSchema, MetaDataSchema } = await import('@chiefofstate/protocol');
const { createNatsSink, createPublisherHandler, createRabbitMqSink, PUBLISHER_RETRY, toBrokerMessage } = await import('@chiefofstate/publisher');
const { createReadSideEngine, readSideMigrations } = await import('@chiefofstate/read-side');
const { createLeaseCoordinator } = await import('@chiefofstate/sharding');

const args = benchArgs();
const totalEvents = Number(args.get('events') ?? 20_000);
const repeats = Number(args.get('repeats') ?? 1);
const writeDoc = !args.has('no-write');
const serverUrl = new URL(process.env['COS_BENCH_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres');
const NATS_URL = 'nats://127.0.0.1:4222';
const AMQP_URL = 'amqp://guest:guest@127.0.0.1:5672';
const NUM_SHARDS = 16;
const EVENTS_PER_ENTITY = 20;
const num = (n: number) => Math.round(n).toLocaleString('en-US');

const tag = randomBytes(4).toString('hex');
const schema = `bench_pub_${tag}`;
const admin = new pg.Client({
  host: serverUrl.hostname,
  port: Number(serverUrl.port || 5432),
  user: decodeURIComponent(serverUrl.username || 'postgres'),
  password: decodeURIComponent(serverUrl.password),
  database: serverUrl.pathname.slice(1) || 'postgres',
});
await admin.connect();
await admin.query(`CREATE SCHEMA ${schema}`);
const database = await createDatabase({
  kind: 'postgres',
  host: serverUrl.hostname,
  port: Number(serverUrl.port || 5432),
  user: decodeURIComponent(serverUrl.username || 'postgres'),
  password: decodeURIComponent(serverUrl.password),
  database: serverUrl.pathname.slice(1) || 'postgres',
  schema,
  poolMax: 5,
  applicationName: 'publish-bench',
});
await migrateToLatest({ database, migrations: mergeMigrations(journalMigrations, readSideMigrations) });
const journal = createJournal({ database, numShards: NUM_SHARDS });
const nc = await natsConnect({ servers: NATS_URL });
const jsm = await jetstreamManager(nc);
const amqp = await amqplib.connect(AMQP_URL);
const amqpAdmin = await amqp.createChannel();
const cpu = os.cpus();
console.error(`publishing benchmark: ${num(totalEvents)} events, ${NUM_SHARDS} shards, ${cpu.length} cores (${cpu[0]?.model ?? '?'})`);

type Broker = 'nats' | 'rabbitmq';
const rows: { broker: Broker; bare: number; cos: number }[] = [];
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
  const heads = await Promise.all(Array.from({ length: NUM_SHARDS }, (_, shard) => journal.latestPosition(shard)));
  console.error(`journal: ${num(written)} events`);

  /** A fresh destination per run; returns its sink settings, a bare publish and a cleanup. */
  const destination = async (broker: Broker, run: string) => {
    if (broker === 'nats') {
      const stream = `bench_pub_${tag}_${run}`;
      const subject = `bench-pub.${stream}`;
      await jsm.streams.add({ name: stream, subjects: [subject] });
      const js = jetstream(nc);
      return {
        sink: () => createNatsSink({ url: NATS_URL, subject }),
        bare: async (message: ReturnType<typeof toBrokerMessage>) => {
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
      sink: () => createRabbitMqSink({ url: AMQP_URL, exchange: '', routingKey: queue }),
      bare: (message: ReturnType<typeof toBrokerMessage>) =>
        new Promise<void>((resolve, reject) =>
          channel.publish('', queue, Buffer.from(message.payload), { messageId: message.id, persistent: true, headers: message.headers }, (error: unknown) =>
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

  for (const broker of ['nats', 'rabbitmq'] as const) {
    const bares: number[] = [];
    const coses: number[] = [];
    for (let r = 0; r < repeats; r++) {
      // bare client: the same messages, the same 16 sequential loops
      const bareTarget = await destination(broker, `bare${r}`);
      let started = performance.now();
      await Promise.all(perShard.map(async (list) => {
        for (const event of list) await bareTarget.bare(toBrokerMessage(event));
      }));
      const bare = written / ((performance.now() - started) / 1000);
      if ((await bareTarget.count()) !== written) throw new Error(`${broker} bare: message count differs from ${written}`);
      await bareTarget.close();

      // COS: the engine and the publisher sink from offset 0
      const target = await destination(broker, `cos${r}`);
      const publisherId = `bench-${broker}-${r}`;
      const offsets = createOffsetStore({ database });
      const handler = createPublisherHandler(target.sink());
      const engine = createReadSideEngine({
        readSides: [{ readSideId: publisherId, handler, timeoutMs: 10_000, failurePolicy: 'REPLAY_STOP', autoStart: true, retry: PUBLISHER_RETRY }],
        numShards: NUM_SHARDS,
        journal,
        offsets,
        ownership: createLeaseCoordinator({ database }),
        journalNotifications: { listen: (channel, listener) => database.listen(channel, listener), channel: JOURNAL_NOTIFY_CHANNEL },
      });
      started = performance.now();
      await engine.start();
      for (let i = 0; i < 100_000; i++) {
        const stored = await offsets.list(publisherId, NUM_SHARDS);
        if (stored.every((o, shard) => o.position >= heads[shard]!)) break;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const cos = written / ((performance.now() - started) / 1000);
      await engine.close();
      await handler.close();
      const count = await target.count();
      if (count < written) throw new Error(`${broker} COS: ${count} messages, expected ${written}`);
      await target.close();
      bares.push(bare);
      coses.push(cos);
      console.error(`${broker}: bare client ${num(bare)} msgs/s, COS ${num(cos)} events/s (${((cos / bare) * 100).toFixed(0)}%)`);
    }
    rows.push({ broker, bare: median(bares), cos: median(coses) });
  }

  const lines = [
    '| broker | bare client, 16 loops (msgs/s) | COS publisher, 16 shards (events/s) | COS / bare |',
    '|---|--:|--:|--:|',
    ...rows.map((row) => `| ${row.broker === 'nats' ? 'NATS JetStream' : 'RabbitMQ (confirms)'} | ${num(row.bare)} | ${num(row.cos)} | ${((row.cos / row.bare) * 100).toFixed(0)}% |`),
  ];
  console.log(lines.join('\n'));
  if (writeDoc) {
    writeBenchmarkSection(
      'publish',
      [
        '<!-- publish:start -->',
        '## Publishing to brokers',
        '',
        `Run: \`npx tsx tools/bench/publish-bench.ts\` (options: \`--events=${totalEvents} --repeats=${repeats}\`; PostgreSQL from`,
        '`COS_BENCH_POSTGRES_URL`; NATS JetStream on 127.0.0.1:4222 and RabbitMQ on 127.0.0.1:5672, each run on a stream /',
        'queue of its own, deleted after).',
        '',
        `Machine: ${cpu[0]?.model ?? 'unknown CPU'}, ${cpu.length} cores shared by PostgreSQL, both brokers and the benchmark process.`,
        '',
        `- Journal: ${num(written)} events (~300-byte EventWrappers), ${NUM_SHARDS} shards.`,
        '- Bare client: the same messages (ids, headers, payload) from the broker\'s own client, 16 loops (one per',
        '  shard) each waiting for its acknowledgement before the next: the parallelism of the engine, nothing read',
        '  or committed.',
        '- COS: `@chiefofstate/read-side` with the `@chiefofstate/publisher` sink from offset 0: journal reads,',
        '  messages built, acknowledgements awaited, offsets committed.',
        `- Median of ${repeats} run(s); ${new Date().toISOString().slice(0, 10)}, Node ${process.version}.`,
        '',
        ...lines,
        '',
        '- Below the 0.7x target: a publisher stream publishes one event at a time (the next only after the',
        '  acknowledgement, like the bare loops), and per event it also reads the journal, decodes the',
        '  payload twice (the engine\'s read-side request, then the EventWrapper for the headers) and commits',
        '  offsets, on two cores shared with PostgreSQL and the broker. Handing batches to',
        '  `EventSink.publish` (ready in the port and both sinks) is the next step.',
        '<!-- publish:end -->',
      ].join('\n'),
    );
  }
} finally {
  await nc.close();
  await amqp.close().catch(() => {});
  await database.close();
  await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await admin.end();
}

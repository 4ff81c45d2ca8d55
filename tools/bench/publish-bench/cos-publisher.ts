/**
 * The COS side of publish-bench.ts, in a process of its own: the read-side engine with the
 * publisher sink on the built packages (what cos-server and cos-readside run). Apart from the bare
 * clients, its CPU time, heap and JIT state are its own: in one process the two skewed each other
 * (the bare clients' prepared messages in the heap, amqplib's call sites shaped by the first user).
 *
 * Forked by publish-bench.ts and driven over the IPC channel: one `run` message per measurement
 * (answered with its `result`), `exit` to end. It stays up between runs, so runs after the first
 * find its code as warm as the bare clients' is.
 */
import { JOURNAL_NOTIFY_CHANNEL, createJournal } from '@chiefofstate/journal';
import { createLeaseCoordinator } from '@chiefofstate/leases';
import { createOffsetStore } from '@chiefofstate/offset-store';
import { createDatabase } from '@chiefofstate/postgres';
import { PUBLISHER_RETRY, createNatsSink, createPublisherHandler, createRabbitMqSink } from '@chiefofstate/publisher';
import { createReadSideEngine } from '@chiefofstate/read-side';
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { connectionOf } from '../bench-support.js';

/** What the parent asks for. */
export type ChildRequest =
  | {
      readonly type: 'run';
      readonly publisherId: string;
      readonly sink: { readonly kind: 'nats'; readonly url: string; readonly subject: string } | { readonly kind: 'rabbitmq'; readonly url: string; readonly queue: string };
      /** each shard's last journal position, as decimal strings: done when every offset reaches it */
      readonly heads: readonly string[];
    }
  | { readonly type: 'exit' };

/** What the child answers: a run's time and this process's CPU time during it. */
export type ChildResult = { readonly type: 'result'; readonly seconds: number; readonly cpuMicros: number } | { readonly type: 'error'; readonly message: string };

/** The process's own settings, from the environment publish-bench.ts forks it with. */
const env = (name: string) => {
  const value = process.env[name];
  if (value === undefined) throw new Error(`${name} is not set: this module is forked by publish-bench.ts`);
  return value;
};
const serverUrl = new URL(env('PUBLISH_BENCH_POSTGRES_URL'));
const numShards = Number(env('PUBLISH_BENCH_SHARDS'));
const batchSize = Number(env('PUBLISH_BENCH_BATCH'));
/** --profile=DIR of publish-bench.ts: a CPU profile of each run, DIR/<publisherId>.cpuprofile */
const profileDir = process.env['PUBLISH_BENCH_PROFILE'];

const database = await createDatabase({
  kind: 'postgres',
  ...connectionOf(serverUrl),
  schema: env('PUBLISH_BENCH_SCHEMA'),
  poolMax: 5,
  applicationName: 'publish-bench-cos',
});
const journal = createJournal({ database, numShards });
const offsets = createOffsetStore({ database });

/** Publishes the journal from offset 0 until every shard's offset is committed up to its head. */
async function run(request: Extract<ChildRequest, { type: 'run' }>): Promise<ChildResult> {
  const sink =
    request.sink.kind === 'nats'
      ? createNatsSink({ url: request.sink.url, subject: request.sink.subject })
      : createRabbitMqSink({ url: request.sink.url, exchange: '', routingKey: request.sink.queue });
  // counts what the broker acknowledged, so the offsets are polled only once it is everything
  let acknowledged = 0;
  const counted: typeof sink = {
    kind: sink.kind,
    publish: (batch, options) => sink.publish(batch, options).then(() => void (acknowledged += batch.length)),
    close: () => sink.close(),
  };
  const handler = createPublisherHandler(counted);
  const heads = request.heads.map(BigInt);
  const total = Number(env('PUBLISH_BENCH_EVENTS'));
  const engine = createReadSideEngine({
    readSides: [{ readSideId: request.publisherId, handler, timeoutMs: 10_000, failurePolicy: 'REPLAY_STOP', autoStart: true, retry: PUBLISHER_RETRY }],
    numShards,
    batchSize,
    journal,
    offsets,
    ownership: createLeaseCoordinator({ database }),
    journalNotifications: { listen: (channel, listener) => database.listen(channel, listener), channel: JOURNAL_NOTIFY_CHANNEL },
  });
  const profiler = profileDir === undefined ? undefined : await startProfile();
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  try {
    await engine.start();
    // bounded: 60 s of 2 ms waits; the offsets read only once every event was acknowledged
    for (let i = 0; ; i++) {
      if (acknowledged >= total) {
        const stored = await offsets.list(request.publisherId, numShards);
        if (stored.every((offset, shard) => offset.position >= heads[shard]!)) break;
      }
      if (i >= 30_000) throw new Error(`${request.publisherId}: not every offset committed within 60 s`);
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    const seconds = (performance.now() - started) / 1000;
    const used = process.cpuUsage(cpuBefore);
    if (profiler) writeFileSync(path.join(profileDir!, `${request.publisherId}.cpuprofile`), JSON.stringify(await profiler.stop()));
    return { type: 'result', seconds, cpuMicros: used.user + used.system };
  } finally {
    await engine.close();
    await handler.close();
  }
}

async function startProfile(): Promise<{ stop(): Promise<unknown> }> {
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
  return {
    async stop() {
      const { profile } = await session.post('Profiler.stop');
      session.disconnect();
      return profile;
    },
  };
}

process.on('message', (message: ChildRequest) => {
  if (message.type === 'exit') {
    void database.close().finally(() => process.exit(0));
    return;
  }
  run(message).then(
    (result) => process.send!(result),
    (error: unknown) => process.send!({ type: 'error', message: error instanceof Error ? error.message : String(error) } satisfies ChildResult),
  );
});
process.send!({ type: 'ready' });

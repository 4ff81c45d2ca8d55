// Subscriptions (COS_SUBSCRIPTION_ENABLED=true) over real processes: the built cos-server on the
// real PostgreSQL, the stock grpc-js write handler, and stock grpc-js streaming clients.
import { create } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { shardOf } from '@chiefofstate/core';
import { testPostgresConnection, testStoreKinds, uniqueSchemaName } from '@chiefofstate/postgres/testing';
import {
  ChiefOfStateService,
  SubscribeAllRequestSchema,
  SubscribeRequestSchema,
  UnsubscribeAllRequestSchema,
  UnsubscribeRequestSchema,
  type SubscribeAllResponse,
  type SubscribeResponse,
} from '@chiefofstate/protocol';
import { pollUntil } from '@chiefofstate/testing';
import { command, startCos, type CosFixture } from './support/cos-fixture.js';
import { startTestHandler, type RunningProcess } from './support/processes.js';

const hasServer = (await testStoreKinds()).includes('postgres');
const NUM_SHARDS = 16;

interface Watched<T> {
  readonly call: grpc.ClientReadableStream<T>;
  readonly messages: T[];
  /** the call's final status */
  readonly ended: Promise<grpc.StatusObject>;
}

function watch<T>(call: grpc.ClientReadableStream<T>): Watched<T> {
  const messages: T[] = [];
  call.on('data', (message: T) => messages.push(message));
  // the status event carries every ending, errors included
  call.on('error', () => {});
  const ended = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
  return { call, messages, ended };
}

const subscribe = (cos: CosFixture, entityId: string, fields: { fromRevision?: bigint; subscriptionId?: string } = {}) =>
  watch<SubscribeResponse>(
    cos.client.serverStream(ChiefOfStateService.method.subscribe, create(SubscribeRequestSchema, { entityId, ...fields })),
  );
const subscribeAll = (cos: CosFixture, fields: { afterOffset?: bigint; subscriptionId?: string } = {}) =>
  watch<SubscribeAllResponse>(cos.client.serverStream(ChiefOfStateService.method.subscribeAll, create(SubscribeAllRequestSchema, fields)));

const increasing = (values: readonly bigint[]) => values.every((value, i) => i === 0 || value > values[i - 1]!);

async function metric(cos: CosFixture, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${cos.metricsPort}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    const match = line.match(/^(\w+)(?:\{(.*)\})? (\S+)$/);
    if (match?.[1] !== name) continue;
    const found = new Map([...(match[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([key, value]) => found.get(key) === value)) sum += Number(match[3]);
  }
  return sum;
}

/** Every journal position of the schema, ascending. */
async function journalPositions(schema: string): Promise<bigint[]> {
  const client = new pg.Client(testPostgresConnection(schema));
  await client.connect();
  try {
    const { rows } = await client.query<{ position: string }>(`select position from ${pg.escapeIdentifier(schema)}.cos_journal order by position`);
    return rows.map((row) => BigInt(row.position));
  } finally {
    await client.end();
  }
}

describe.runIf(hasServer)('cos-server subscriptions', () => {
  let handler: RunningProcess & { port: number };
  let cos: CosFixture;
  const others: CosFixture[] = [];
  let env: Record<string, string>;

  beforeAll(async () => {
    handler = await startTestHandler();
    env = {
      WRITE_SIDE_HANDLER_SERVICE_HOST: '127.0.0.1',
      WRITE_SIDE_HANDLER_SERVICE_PORT: String(handler.port),
      COS_SUBSCRIPTION_ENABLED: 'true',
      COS_NUM_SHARDS: String(NUM_SHARDS),
      POD_IP: '127.0.0.1',
      COS_COMMAND_HANDLER_TIMEOUT: '20',
      // entity states stay out of the slow-subscriber test's heap measure
      COS_ENTITY_CACHE_MAX_BYTES: String(2 * 1024 * 1024),
    };
    cos = await startCos(env);
  }, 90_000);

  afterAll(async () => {
    await Promise.all(others.map((other) => other.server.kill('SIGKILL')));
    for (const other of others) await other.dispose().catch(() => {});
    await cos?.dispose();
    await handler?.kill();
  });

  it('catches up from revision 0 on an entity with 1,000 events while commands keep arriving: no gap, no duplicate, in order', async () => {
    const entityId = 'catch-up-1';
    for (let i = 0; i < 100; i++) {
      await cos.send(entityId, command('Emit', { events: Array.from({ length: 10 }, (_, j) => `e${i * 10 + j + 1}`) }));
    }
    const writing = (async () => {
      for (let i = 1; i <= 200; i++) await cos.send(entityId, command('Emit', { events: [`e${1000 + i}`] }));
    })();
    const stream = subscribe(cos, entityId, { fromRevision: 0n });
    await writing;
    await pollUntil(() => stream.messages.length >= 1200, 60_000, '1,200 events streamed');
    // one more: anything repeated or out of place would have to come before it
    await cos.send(entityId, command('Emit', { events: ['e1201'] }));
    await pollUntil(() => stream.messages.length >= 1201, 10_000, 'the live event');
    stream.call.cancel();
    const revisions = stream.messages.map((m) => m.meta?.revisionNumber);
    expect(revisions).toEqual(Array.from({ length: 1201 }, (_, i) => i + 1));
    expect(increasing(stream.messages.map((m) => m.offset))).toBe(true);
    const first = stream.messages[0]!;
    expect(first.subscriptionId).toMatch(/^[0-9a-f-]{36}$/);
    expect(stream.messages.every((m) => m.subscriptionId === first.subscriptionId && m.meta?.entityId === entityId)).toBe(true);
    expect(first.event?.typeUrl).toBe('type.googleapis.com/cos.test.Event');
    expect(first.resultingState?.typeUrl).toBe('type.googleapis.com/cos.test.State');
    // what the journal holds: the same events at the same offsets
    const stored = await cos.journal(entityId);
    expect(stored).toHaveLength(1201);
    expect((await stream.ended).code).toBe(grpc.status.CANCELLED);
  }, 180_000);

  it('resumes SubscribeAll after a disconnect from the last offset received: every event once, in journal order', async () => {
    const ids = Array.from({ length: 30 }, (_, i) => `resume-${i}`);
    const writing = (async () => {
      for (let round = 0; round < 10; round++) await Promise.all(ids.map((id) => cos.send(id, command('Emit', { events: [`r${round}`] }))));
    })();
    const first = subscribeAll(cos, { afterOffset: 0n });
    await pollUntil(() => first.messages.length >= 150, 30_000, 'the first events');
    first.call.cancel(); // the client goes away mid-stream
    await first.ended;
    const last = first.messages.at(-1)!.offset;
    const second = subscribeAll(cos, { afterOffset: last });
    await writing;
    const ours = () => [...first.messages, ...second.messages].filter((m) => m.meta?.entityId.startsWith('resume-'));
    await pollUntil(() => ours().length >= 300, 60_000, 'the rest after resuming');
    second.call.cancel();
    const offsets = [...first.messages, ...second.messages].map((m) => m.offset);
    expect(increasing(offsets)).toBe(true);
    // every event of the journal up to the last one received, each once
    const received = offsets.at(-1)!;
    expect(offsets).toEqual((await journalPositions(cos.schema)).filter((p) => p <= received));
    expect(ours()).toHaveLength(300);
  }, 120_000);

  it('Unsubscribe and UnsubscribeAll end the streams with OK; an unknown id still answers', async () => {
    const one = subscribe(cos, 'unsub-1', { subscriptionId: 'sub-one' });
    const all = subscribeAll(cos, { subscriptionId: 'sub-all' });
    await cos.send('unsub-1', command('Emit', { events: ['a'] }));
    await pollUntil(() => one.messages.length === 1 && all.messages.length >= 1, 10_000, 'live events');
    expect(one.messages[0]!.subscriptionId).toBe('sub-one');
    expect(all.messages[0]!.subscriptionId).toBe('sub-all');
    const unsub = await cos.client.unary(ChiefOfStateService.method.unsubscribe, create(UnsubscribeRequestSchema, { subscriptionId: 'sub-one' }));
    expect(unsub.response.subscriptionId).toBe('sub-one');
    expect((await one.ended).code).toBe(grpc.status.OK);
    await cos.client.unary(ChiefOfStateService.method.unsubscribeAll, create(UnsubscribeAllRequestSchema, { subscriptionId: 'sub-all' }));
    expect((await all.ended).code).toBe(grpc.status.OK);
    const unknown = await cos.client.unary(ChiefOfStateService.method.unsubscribe, create(UnsubscribeRequestSchema, { subscriptionId: 'never' }));
    expect(unknown.response.subscriptionId).toBe('never');
    await pollUntil(async () => (await metric(cos, 'cos_subscriptions_active')) === 0, 5000, 'no subscription open');
  }, 60_000);

  it('bounds a slow subscriber under a burst: it reads the journal once behind, the heap stays bounded, and it loses nothing', async () => {
    const start = (await journalPositions(cos.schema)).at(-1) ?? 0n;
    const slow = subscribeAll(cos, { afterOffset: start });
    await cos.send('slow-0', command('Emit', { events: ['first'] }));
    await pollUntil(() => slow.messages.length >= 1, 10_000, 'the first event');
    // flow control: grpc-js stops reading, the HTTP/2 window fills, COS stops pulling the cursor
    slow.call.pause();
    const heapBefore = await metric(cos, 'nodejs_heap_size_used_bytes');
    const name = 'x'.repeat(4096);
    const entities = Array.from({ length: 6000 }, (_, i) => `slow-burst-${i}`);
    for (let i = 0; i < entities.length; i += 100) {
      await Promise.all(entities.slice(i, i + 100).map((id) => cos.send(id, command('Emit', { events: [name] }))));
    }
    const heapAfter = await metric(cos, 'nodejs_heap_size_used_bytes');
    console.log(`slow subscriber: heap ${(heapBefore / 2 ** 20).toFixed(1)} -> ${(heapAfter / 2 ** 20).toFixed(1)} MiB`);
    const burstBytes = await journalBytesAfter(cos.schema, start);
    const received = slow.messages.length;
    // the stream holds what fits in the flow-control windows, not the burst
    expect(received).toBeLessThan(500);
    expect(burstBytes).toBeGreaterThan(40 * 1024 * 1024);
    // the shared tail keeps 16 MiB at most, and nothing is buffered for the subscriber (buffering
    // the burst would take more than the burst itself: bytes and their decoded messages). The heap
    // is read without a forced collection, so garbage of the burst counts too (a clean-clone run
    // saw 0.78 of the burst): the bound is the burst itself.
    expect(heapAfter - heapBefore).toBeLessThan(burstBytes);
    slow.call.resume();
    await pollUntil(() => slow.messages.length >= entities.length + 1, 120_000, 'the whole burst');
    slow.call.cancel();
    const offsets = slow.messages.map((m) => m.offset);
    expect(increasing(offsets)).toBe(true);
    expect(offsets).toEqual((await journalPositions(cos.schema)).filter((p) => p > start));
    expect(await metric(cos, 'cos_subscription_events_total', { kind: 'all', source: 'journal' })).toBeGreaterThan(0);
    console.log(`slow subscriber: burst ${(burstBytes / 2 ** 20).toFixed(1)} MiB, heap ${((heapAfter - heapBefore) / 2 ** 20).toFixed(1)} MiB more, ${received} events buffered in the windows`);
  }, 300_000);

  it('ends open streams with UNAVAILABLE and where to resume when the replica stops (SIGTERM)', async () => {
    const stopping = await startCos(env);
    others.push(stopping);
    const all = subscribeAll(stopping, { afterOffset: 0n });
    const one = subscribe(stopping, 'stop-1', { fromRevision: 1n });
    await stopping.send('stop-1', command('Emit', { events: ['a', 'b'] }));
    await pollUntil(() => all.messages.length === 2 && one.messages.length === 2, 10_000, 'both events');
    const exited = stopping.server.kill('SIGTERM');
    const [allStatus, oneStatus] = await Promise.all([all.ended, one.ended]);
    expect(allStatus.code).toBe(grpc.status.UNAVAILABLE);
    expect(allStatus.details).toContain(`resume with after_offset=${all.messages[1]!.offset}`);
    expect(oneStatus.code).toBe(grpc.status.UNAVAILABLE);
    expect(oneStatus.details).toContain('resume with from_revision=3');
    expect(await exited).toBe(0);
  }, 60_000);

  it('SubscribeAll on one replica sees the events written through another; Unsubscribe through the other ends it', async () => {
    const schema = uniqueSchemaName('subs');
    const a = await startCos(env, schema);
    others.push(a);
    const b = await startCos(env, schema);
    others.push(b);
    const all = subscribeAll(a, { afterOffset: 0n, subscriptionId: 'across' });
    const ids = Array.from({ length: 64 }, (_, i) => `across-${i}`);
    // every write goes through b (which forwards it when a owns the entity's shard)
    const one = subscribe(a, ids[0]!, { fromRevision: 1n });
    expect(new Set(ids.map((id) => shardOf(id, NUM_SHARDS))).size).toBeGreaterThan(8);
    for (let round = 0; round < 3; round++) await Promise.all(ids.map((id) => b.send(id, command('Emit', { events: [`b${round}`] }))));
    await pollUntil(() => all.messages.length >= 192 && one.messages.length >= 3, 30_000, 'every event on a');
    const positions = await journalPositions(schema);
    expect(all.messages.map((m) => m.offset)).toEqual(positions);
    expect(one.messages.map((m) => m.meta?.revisionNumber)).toEqual([1, 2, 3]);
    await b.client.unary(ChiefOfStateService.method.unsubscribeAll, create(UnsubscribeAllRequestSchema, { subscriptionId: 'across' }));
    expect((await all.ended).code).toBe(grpc.status.OK);
    one.call.cancel();
  }, 120_000);
});

async function journalBytesAfter(schema: string, position: bigint): Promise<number> {
  const client = new pg.Client(testPostgresConnection(schema));
  await client.connect();
  try {
    const { rows } = await client.query<{ bytes: string }>(
      `select coalesce(sum(length(payload)), 0) as bytes from ${pg.escapeIdentifier(schema)}.cos_journal where position > $1`,
      [position.toString()],
    );
    return Number(rows[0]!.bytes);
  } finally {
    await client.end();
  }
}

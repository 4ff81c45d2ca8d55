import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { InvalidArgumentError, NotFoundError, shardOf } from '@chiefofstate/core';
import { createCircuitBreaker, type CircuitBreaker } from '@chiefofstate/circuit-breaker';
import { createReadSideClient, type ReadSideClient } from '@chiefofstate/handler-client';
import { createJournal, JOURNAL_NOTIFY_CHANNEL, type Journal } from '@chiefofstate/journal';
import { createLeaseCoordinator } from '@chiefofstate/leases';
import { createOffsetStore } from '@chiefofstate/offset-store';
import { migrateToLatest, notify, type Database } from '@chiefofstate/postgres';
import { openTestDatabase, testStoreKinds, type TestDatabase, type TestStoreKind } from '@chiefofstate/postgres/testing';
import { entityIdHeader, toReadSideRequest } from './delivery-request.js';
import { createReadSideEngine, type ReadSideEngine } from './engine.js';
import type { FailurePolicy } from './failure-policy.js';
import { createReadSideManager, type ReadSideManager } from './manager.js';
import type { JournalEventRecord, ReadSideHandlerPort } from './ports.js';
import { engineTestMigrations, eventPayload, revisionsByEntity, startRecordingHandler, until } from './test-support/fixtures.js';

const NUM_SHARDS = 4;

interface SideSpec {
  readonly id: string;
  readonly policy?: FailurePolicy;
  readonly autoStart?: boolean;
  readonly timeoutMs?: number;
  /** the handler made of the read side's gRPC client (default: the client itself) */
  readonly handler?: (client: ReadSideClient) => ReadSideHandlerPort;
  readonly breaker?: CircuitBreaker;
}

/** A test world: a database with the journal, a recording handler, and engines on demand. */
async function createWorld(kind: TestStoreKind) {
  const database: TestDatabase = await openTestDatabase(kind);
  await migrateToLatest({ database, migrations: engineTestMigrations });
  const journal: Journal = createJournal({ database, numShards: NUM_SHARDS });
  const handler = await startRecordingHandler();
  const clients: ReadSideClient[] = [];
  const engines: ReadSideEngine[] = [];
  const revisions = new Map<string, number>();

  const append = async (entityId: string, count = 1) => {
    for (let i = 0; i < count; i++) {
      const revision = revisions.get(entityId) ?? 0;
      await journal.append({ entityId, expectedRevision: BigInt(revision), events: [eventPayload(entityId, revision + 1)] });
      revisions.set(entityId, revision + 1);
    }
  };

  const startEngine = async (
    sides: readonly SideSpec[],
    options: { db?: Database; pollIntervalMs?: number; leaseMs?: number; commitIntervalMs?: number; batchSize?: number } = {},
  ): Promise<{ engine: ReadSideEngine; manager: ReadSideManager }> => {
    const db = options.db ?? database;
    const offsets = createOffsetStore({ database: db });
    const readSides = sides.map((side) => {
      const client = createReadSideClient({
        host: '127.0.0.1',
        port: handler.server.port,
        timeoutMs: side.timeoutMs ?? 2000,
        ...(side.breaker ? { breaker: side.breaker } : {}),
      });
      clients.push(client);
      return {
        readSideId: side.id,
        handler: side.handler ? side.handler(client) : client,
        timeoutMs: side.timeoutMs ?? 2000,
        failurePolicy: side.policy ?? 'REPLAY_STOP',
        autoStart: side.autoStart ?? true,
      };
    });
    const engine = createReadSideEngine({
      readSides,
      numShards: NUM_SHARDS,
      journal: createJournal({ database: db, numShards: NUM_SHARDS }),
      offsets,
      ownership: createLeaseCoordinator({ database: db, leaseMs: options.leaseMs ?? 1000, renewIntervalMs: 100 }),
      journalNotifications: { listen: (channel, listener) => db.listen(channel, listener), channel: JOURNAL_NOTIFY_CHANNEL },
      controlNotifications: { listen: (channel, listener) => db.listen(channel, listener) },
      pollIntervalMs: options.pollIntervalMs ?? 200,
      retry: { maxRetries: 2, initialBackoffMs: 20, maxBackoffMs: 100 },
      ...(options.commitIntervalMs !== undefined ? { commitIntervalMs: options.commitIntervalMs } : {}),
      ...(options.batchSize !== undefined ? { batchSize: options.batchSize } : {}),
    });
    engines.push(engine);
    await engine.start();
    const manager = createReadSideManager({
      readSideIds: readSides.map((side) => side.readSideId),
      numShards: NUM_SHARDS,
      offsets,
      journal,
      engine,
      notify: (channel, payload) => notify(db.kysely, channel, payload),
    });
    return { engine, manager };
  };

  /** Entities with exactly one on each shard first, so tests can aim at shards. */
  const entityOnShard = (shard: number, name = 'entity') => {
    for (let i = 0; ; i++) if (shardOf(`${name}-${i}`, NUM_SHARDS) === shard) return `${name}-${i}`;
  };

  const dispose = async () => {
    await Promise.all(engines.map((engine) => engine.close()));
    await Promise.all(clients.map((client) => client.close()));
    await handler.close();
    await database.dispose();
  };

  return { database, journal, handler, append, startEngine, entityOnShard, dispose };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe.each(await testStoreKinds())('read-side engine on %s', (kind) => {
  let world: Awaited<ReturnType<typeof createWorld>>;
  afterEach(async () => {
    await world?.dispose();
  });

  it('delivers every event of many entities once, in order per entity, with the metadata, and commits the offsets', async () => {
    world = await createWorld(kind);
    const entities = [...Array.from({ length: 30 }, (_, i) => `account-${i}`), 'compte-é', '账户-7', 'a b%c'];
    // half before the engine starts (catch-up), half after (live)
    await Promise.all(entities.map((id) => world.append(id, 3)));
    const { manager } = await world.startEngine([{ id: 'balances' }]);
    await Promise.all(entities.map((id) => world.append(id, 3)));
    await until(() => world.handler.accepted.length >= entities.length * 6, 15_000, 'all events');
    await sleep(300);
    expect(world.handler.calls).toHaveLength(entities.length * 6); // no failure: nothing twice

    const byEntity = revisionsByEntity(world.handler.accepted);
    for (const id of entities) expect(byEntity.get(id), id).toEqual([1, 2, 3, 4, 5, 6]);
    for (const call of world.handler.accepted) {
      expect(call.readSideId).toBe('balances');
      expect(call.event).toBe(`${call.entityId}@${call.revision}`);
      expect(call.state).toBe(`state ${call.revision}`);
      expect(call.headerEntityId).toBe(entityIdHeader(call.entityId));
      expect(call.headerTag).toBe(String(shardOf(call.entityId, NUM_SHARDS)));
    }
    expect(world.handler.accepted.find((c) => c.entityId === 'compte-é')?.headerEntityId).toBe('compte-%C3%A9');
    expect(world.handler.accepted.find((c) => c.entityId === 'a b%c')?.headerEntityId).toBe('a b%c');

    await until(async () => {
      const offsets = await manager.latestOffsets('balances');
      const latest = await Promise.all(offsets.map((o) => world.journal.latestPosition(o.shard)));
      return offsets.every((o, i) => o.position === latest[i]);
    }, 5_000, 'offsets at the end of each shard');
  });

  it('a handler with handleBatch gets each read batch at once; after a failed batch its accepted events count, the first other goes alone, then batches again', async () => {
    world = await createWorld(kind);
    const entity = world.entityOnShard(1, 'batch');
    await world.append(entity, 30);
    const revisionOf = (event: JournalEventRecord) => toReadSideRequest(event.payload, '').meta!.revisionNumber;
    const batches: number[][] = [];
    let failed = false;
    const { engine, manager } = await world.startEngine(
      [
        {
          id: 'batched',
          handler: (client) => ({
            handleReadSide: (request, call) => client.handleReadSide(request, call),
            async handleBatch(events) {
              const revisions = events.map(revisionOf);
              batches.push(revisions);
              if (!failed && revisions.includes(12)) {
                failed = true;
                // the broker took 11, then failed on 12
                throw Object.assign(new Error('broker unreachable'), { accepted: revisions.indexOf(12) });
              }
            },
          }),
        },
      ],
      { batchSize: 10 },
    );
    await until(async () => (await manager.latestOffset('batched', 1)).position === (await world.journal.latestPosition(1)), 10_000, 'offset at the head');
    const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
    expect(batches).toEqual([range(1, 10), range(11, 20), range(13, 22), range(23, 30)]);
    // 12 went on its own, through HandleReadSide
    expect(world.handler.accepted.map((call) => call.revision)).toEqual([12]);
    expect(engine.status().find((s) => s.shard === 1)).toMatchObject({ delivered: 30, failures: 1, stopped: false, lastError: 'broker unreachable' });
  });

  it('a handler that overlaps batches gets the next one before the previous settled, two at most; the offset moves over whole batches in order', async () => {
    world = await createWorld(kind);
    const entity = world.entityOnShard(2, 'overlap');
    await world.append(entity, 40);
    const revisionOf = (event: JournalEventRecord) => toReadSideRequest(event.payload, '').meta!.revisionNumber;
    const calls: { first: number; settle: () => void }[] = [];
    let inHandler = 0;
    let most = 0;
    const { manager } = await world.startEngine(
      [
        {
          id: 'overlapping',
          handler: (client) => ({
            handleReadSide: (request, call) => client.handleReadSide(request, call),
            overlapBatches: true,
            handleBatch(events) {
              inHandler++;
              most = Math.max(most, inHandler);
              return new Promise<void>((resolve) =>
                calls.push({
                  first: revisionOf(events[0]!),
                  settle: () => {
                    inHandler--;
                    resolve();
                  },
                }),
              );
            },
          }),
        },
      ],
      { batchSize: 10 },
    );
    const offset = async () => (await manager.latestOffset('overlapping', 2)).position;
    const positions = (await world.journal.readShard({ shard: 2, afterPosition: 0n, limit: 100 })).map((e) => e.position);
    await until(() => calls.length === 2, 5_000, 'the second batch handed over while the first is in the handler');
    expect(calls.map((c) => c.first)).toEqual([1, 11]);
    // the later batch settles first: nothing counts until the earlier one has
    calls[1]!.settle();
    await sleep(100);
    expect(await offset()).toBe(0n);
    expect(calls).toHaveLength(2);
    calls[0]!.settle();
    await until(async () => (await offset()) === positions[19], 5_000, 'offset after both batches');
    await until(() => calls.length === 4, 5_000, 'the next two batches');
    calls[2]!.settle();
    calls[3]!.settle();
    await until(async () => (await offset()) === positions[39], 5_000, 'offset at the head');
    expect(calls.map((c) => c.first)).toEqual([1, 11, 21, 31]);
    expect(most).toBe(2);
  });

  it('overlapping batches through a long backlog, the stream still reads its stored offset every poll: a pause set without a notification is seen', async () => {
    world = await createWorld(kind);
    const entity = world.entityOnShard(0, 'overlap-poll');
    await world.append(entity, 200);
    const firsts: number[] = [];
    await world.startEngine(
      [
        {
          id: 'overlap-poll',
          handler: (client) => ({
            handleReadSide: (request, call) => client.handleReadSide(request, call),
            overlapBatches: true,
            async handleBatch(events) {
              firsts.push(toReadSideRequest(events[0]!.payload, '').meta!.revisionNumber);
              await sleep(40);
            },
          }),
        },
      ],
      { batchSize: 10, pollIntervalMs: 100 },
    );
    await until(() => firsts.length >= 2, 5_000, 'the first batches');
    // paused behind the engine's back: only its poll of the stored offset can tell
    await sql`UPDATE cos_read_side_offsets SET paused = true WHERE read_side_id = 'overlap-poll'`.execute(world.database.kysely);
    const pausedAt = firsts.length;
    await sleep(500);
    const after = firsts.length;
    // a few batches at most were already on their way; the backlog of 20 batches was not run through
    expect(after - pausedAt).toBeLessThanOrEqual(10);
    expect(after).toBeLessThan(20);
    await sleep(300);
    expect(firsts.length).toBe(after);
  });

  it('when the earlier of two overlapping batches fails, the later counts for nothing: delivery goes on after the accepted events, nothing skipped', async () => {
    world = await createWorld(kind);
    const entity = world.entityOnShard(3, 'overlap-fail');
    await world.append(entity, 30);
    const revisionOf = (event: JournalEventRecord) => toReadSideRequest(event.payload, '').meta!.revisionNumber;
    const batches: number[][] = [];
    let release: () => void = () => {};
    const secondHandedOver = new Promise<void>((resolve) => (release = resolve));
    let failed = false;
    const { manager } = await world.startEngine(
      [
        {
          id: 'overlap-fails',
          handler: (client) => ({
            handleReadSide: (request, call) => client.handleReadSide(request, call),
            overlapBatches: true,
            async handleBatch(events) {
              const revisions = events.map(revisionOf);
              batches.push(revisions);
              if (revisions[0] === 11) release();
              if (!failed && revisions[0] === 1) {
                // fails (5 taken) only once the next batch is in the handler too
                await secondHandedOver;
                failed = true;
                throw Object.assign(new Error('broker unreachable'), { accepted: 5 });
              }
            },
          }),
        },
      ],
      { batchSize: 10 },
    );
    await until(async () => (await manager.latestOffset('overlap-fails', 3)).position === (await world.journal.latestPosition(3)), 10_000, 'offset at the head');
    const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
    // 1-10 failed after 5; 11-20 was in the handler meanwhile; 6 alone, then batches again from 7
    expect(batches.slice(0, 2)).toEqual([range(1, 10), range(11, 20)]);
    expect(world.handler.accepted.map((call) => call.revision)).toEqual([6]);
    expect(batches.slice(2)).toEqual([range(7, 16), range(17, 26), range(27, 30)]);
  });

  it('wakes on NOTIFY: a new event reaches the handler within a fraction of a second without polling', async () => {
    world = await createWorld(kind);
    await world.startEngine([{ id: 'live' }], { pollIntervalMs: 60_000 });
    await sleep(200); // the first polls are done; from now on only notifications wake the streams
    const latencies: number[] = [];
    for (let i = 0; i < 5; i++) {
      const before = world.handler.accepted.length;
      const startedAt = performance.now();
      await world.append(`live-${i}`);
      await until(() => world.handler.accepted.length > before, 5_000, 'delivery');
      latencies.push(performance.now() - startedAt);
    }
    expect(Math.max(...latencies)).toBeLessThan(500);
  });

  it('STOP stops only the failing shard, says so in status, and resume lifts it', async () => {
    world = await createWorld(kind);
    const victim = world.entityOnShard(1, 'stop');
    const neighbour = world.entityOnShard(1, 'after');
    const others = [0, 2, 3].map((shard) => world.entityOnShard(shard, 'other'));
    world.handler.setReply((call) => (call.entityId === victim && call.revision === 2 ? 'error' : 'ok'));
    const { engine, manager } = await world.startEngine([{ id: 'strict', policy: 'STOP' }]);
    await world.append(victim, 3);
    await world.append(neighbour, 2); // after the failing event in the same shard: held back
    for (const id of others) await world.append(id, 4);

    await until(() => engine.status().find((s) => s.shard === 1)!.stopped, 5_000, 'stop');
    await until(() => others.every((id) => world.handler.accepted.filter((c) => c.entityId === id).length === 4), 5_000, 'others');
    await sleep(300);
    expect(world.handler.calls.filter((c) => c.entityId === victim).map((c) => c.revision)).toEqual([1, 2]); // no retry
    expect(world.handler.accepted.filter((c) => c.entityId === neighbour)).toEqual([]);
    const stopped = engine.status().find((s) => s.shard === 1)!;
    expect(stopped).toMatchObject({ readSideId: 'strict', owned: true, stopped: true, stops: 1, failures: 1 });
    expect(stopped.lastError).toContain(`cannot project ${victim}@2`);
    expect(engine.status().filter((s) => s.stopped)).toHaveLength(1);

    world.handler.setReply(() => 'ok');
    await manager.resume('strict');
    await until(() => world.handler.accepted.filter((c) => c.entityId === neighbour).length === 2, 5_000, 'resumed');
    expect(revisionsByEntity(world.handler.accepted).get(victim)).toEqual([1, 2, 3]);
    expect(engine.status().find((s) => s.shard === 1)!.stopped).toBe(false);
  });

  it('SKIP skips the failing event after one attempt and goes on', async () => {
    world = await createWorld(kind);
    const victim = world.entityOnShard(2, 'skip');
    world.handler.setReply((call) => (call.entityId === victim && call.revision === 2 ? 'unsuccessful' : 'ok'));
    const { engine, manager } = await world.startEngine([{ id: 'lenient', policy: 'SKIP' }]);
    await world.append(victim, 4);
    await until(() => world.handler.accepted.filter((c) => c.entityId === victim).length === 3, 5_000, 'the rest');
    expect(world.handler.calls.filter((c) => c.entityId === victim).map((c) => c.revision)).toEqual([1, 2, 3, 4]);
    expect(engine.status().find((s) => s.shard === 2)).toMatchObject({ skipped: 1, stopped: false, failures: 1 });
    await until(async () => (await manager.latestOffset('lenient', 2)).position === (await world.journal.latestPosition(2)), 5_000, 'offset');
  });

  it('REPLAY_SKIP retries with backoff a bounded number of times, then skips', async () => {
    world = await createWorld(kind);
    const victim = world.entityOnShard(3, 'replay-skip');
    world.handler.setReply((call) => (call.entityId === victim && call.revision === 1 ? 'error' : 'ok'));
    const { engine } = await world.startEngine([{ id: 'retrying', policy: 'REPLAY_SKIP' }]);
    await world.append(victim, 2);
    await until(() => world.handler.accepted.some((c) => c.entityId === victim && c.revision === 2), 5_000, 'the next event');
    // 1 attempt + maxRetries (2)
    expect(world.handler.calls.filter((c) => c.entityId === victim).map((c) => c.revision)).toEqual([1, 1, 1, 2]);
    expect(engine.status().find((s) => s.shard === 3)).toMatchObject({ skipped: 1, failures: 3, stopped: false });
  });

  it('REPLAY_STOP retries a bounded number of times, then stops; a timeout counts as a failure', async () => {
    world = await createWorld(kind);
    const victim = world.entityOnShard(0, 'replay-stop');
    world.handler.setReply((call) => (call.entityId === victim && call.revision === 2 ? { delayMs: 1000 } : 'ok'));
    const { engine, manager } = await world.startEngine([{ id: 'patient', policy: 'REPLAY_STOP', timeoutMs: 150 }]);
    await world.append(victim, 3);
    await until(() => engine.status().find((s) => s.shard === 0)!.stopped, 10_000, 'stop');
    expect(world.handler.accepted.filter((c) => c.entityId === victim).map((c) => c.revision)).toEqual([1]);
    expect(world.handler.calls.filter((c) => c.entityId === victim).map((c) => c.revision)).toEqual([1, 2, 2, 2]);
    expect(engine.status().find((s) => s.shard === 0)!.lastError).toMatch(/150 ms/);

    world.handler.setReply(() => 'ok');
    await manager.resume('patient', 0);
    await until(() => world.handler.accepted.filter((c) => c.entityId === victim).length >= 3, 5_000, 'resumed');
  });

  it("waits while the read side's circuit breaker is open: its refusals use none of REPLAY_STOP's retries", async () => {
    world = await createWorld(kind);
    const victim = world.entityOnShard(2, 'breaker');
    let down = true;
    world.handler.setReply((call) => (down && call.entityId === victim ? 'error' : 'ok'));
    const breaker = createCircuitBreaker({ name: 'read side guarded', maxFailures: 2, callTimeoutMs: 2000, resetTimeoutMs: 500 });
    const { engine } = await world.startEngine([{ id: 'guarded', policy: 'REPLAY_STOP', breaker }]);
    await world.append(victim, 2);
    // two real failures (the first attempt and one retry of the two allowed) open the breaker
    await until(() => breaker.state() === 'open', 5_000, 'the breaker open');
    expect(world.handler.calls.filter((c) => c.entityId === victim)).toHaveLength(2);
    // while it is open the shard waits: refusals are not attempts, so it does not stop
    await sleep(300);
    expect(engine.status().find((s) => s.shard === 2)).toMatchObject({ stopped: false, failures: 2 });
    down = false;
    await until(() => world.handler.accepted.filter((c) => c.entityId === victim).length === 2, 5_000, 'delivered after the trial call');
    expect(world.handler.calls.filter((c) => c.entityId === victim).map((c) => c.revision)).toEqual([1, 1, 1, 2]);
    expect(breaker.state()).toBe('closed');
    expect(breaker.stats().rejected).toBeGreaterThan(0);
  });

  it('pause holds a read side (all shards or one) and resume releases it; both are stored', async () => {
    world = await createWorld(kind);
    const { manager } = await world.startEngine([{ id: 'pausable' }, { id: 'untouched' }]);
    await manager.pause('pausable');
    await world.append('p-1', 2);
    await until(() => world.handler.accepted.filter((c) => c.readSideId === 'untouched').length === 2, 5_000, 'other read side');
    await sleep(400);
    expect(world.handler.calls.filter((c) => c.readSideId === 'pausable')).toEqual([]);
    expect((await createOffsetStore({ database: world.database }).list('pausable', NUM_SHARDS)).every((o) => o.paused)).toBe(true);

    await manager.resume('pausable');
    await until(() => world.handler.accepted.filter((c) => c.readSideId === 'pausable').length === 2, 5_000, 'resumed');

    // one shard
    const held = world.entityOnShard(1, 'held');
    const free = world.entityOnShard(2, 'free');
    await manager.pause('pausable', 1);
    await world.append(held);
    await world.append(free);
    await until(() => world.handler.accepted.some((c) => c.readSideId === 'pausable' && c.entityId === free), 5_000, 'shard 2');
    await sleep(300);
    expect(world.handler.calls.some((c) => c.readSideId === 'pausable' && c.entityId === held)).toBe(false);
    await manager.resume('pausable', 1);
    await until(() => world.handler.accepted.some((c) => c.readSideId === 'pausable' && c.entityId === held), 5_000, 'shard 1');
  });

  it('restart replays a read side from the start; restart by shard replays that shard only', async () => {
    world = await createWorld(kind);
    const { manager } = await world.startEngine([{ id: 'replayed' }]);
    const entities = [0, 1, 2, 3].map((shard) => world.entityOnShard(shard, 'r'));
    for (const id of entities) await world.append(id, 2);
    await until(() => world.handler.accepted.length === 8, 5_000, 'first pass');
    await manager.restart('replayed');
    await until(() => world.handler.accepted.length === 16, 5_000, 'replay');
    expect(revisionsByEntity(world.handler.accepted).get(entities[0]!)).toEqual([1, 2, 1, 2]);
    await manager.restart('replayed', 3);
    await until(() => world.handler.accepted.length === 18, 5_000, 'shard replay');
    await sleep(300);
    expect(world.handler.accepted.slice(16).map((c) => c.entityId)).toEqual([entities[3], entities[3]]);
    expect(world.handler.calls).toHaveLength(18);
  });

  it('a restart made while a replay has delivered but not yet committed still replays from the start', async () => {
    world = await createWorld(kind);
    const id = world.entityOnShard(1, 'aba');
    // commits only at the end of a batch: a replay in progress has nothing committed (offset 0)
    const { manager } = await world.startEngine([{ id: 'twice' }], { commitIntervalMs: 60_000 });
    await world.append(id, 6);
    await until(() => world.handler.accepted.length === 6, 5_000, 'first pass');
    world.handler.setReply(() => ({ delayMs: 150 }));
    await manager.restart('twice');
    await until(() => world.handler.accepted.length >= 8, 5_000, 'replay under way');
    await manager.restart('twice', 1); // the stored offset is 0 already: only the engine can tell
    const at = world.handler.calls.length;
    world.handler.setReply(() => 'ok');
    await until(() => world.handler.accepted.slice(at).filter((c) => c.revision === 6).length === 1, 10_000, 'second replay');
    // after the second restart the entity is replayed from revision 1 (the call in flight may finish first)
    const after = world.handler.accepted.slice(at).map((c) => c.revision);
    expect(after.slice(after.indexOf(1))).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('skip skips exactly the next unprocessed event of the shard, and lifts a stop', async () => {
    world = await createWorld(kind);
    const victim = world.entityOnShard(2, 'poison');
    world.handler.setReply((call) => (call.entityId === victim && call.revision === 2 ? 'error' : 'ok'));
    const { engine, manager } = await world.startEngine([{ id: 'skippy', policy: 'STOP' }]);
    await world.append(victim, 4);
    await until(() => engine.status().find((s) => s.shard === 2)!.stopped, 5_000, 'stop');
    expect(await manager.skip('skippy', 2)).toBe(true);
    await until(() => world.handler.accepted.filter((c) => c.entityId === victim).length === 3, 5_000, 'after the skip');
    expect(world.handler.accepted.filter((c) => c.entityId === victim).map((c) => c.revision)).toEqual([1, 3, 4]);
    // nothing left to skip
    await until(async () => (await manager.latestOffset('skippy', 2)).position === (await world.journal.latestPosition(2)), 5_000, 'offset');
    expect(await manager.skip('skippy', 2)).toBe(false);
    // skipping every shard while paused: exactly one event per shard that has one
    await manager.pause('skippy');
    const a = world.entityOnShard(0, 'sa');
    const b = world.entityOnShard(1, 'sb');
    await world.append(a, 2);
    await world.append(b, 2);
    expect(await manager.skip('skippy')).toBe(true);
    await manager.resume('skippy');
    await until(() => world.handler.accepted.some((c) => c.entityId === b), 5_000, 'resumed');
    await until(() => world.handler.accepted.some((c) => c.entityId === a), 5_000, 'resumed');
    expect(world.handler.accepted.filter((c) => c.entityId === a || c.entityId === b).map((c) => `${c.entityId}@${c.revision}`).sort()).toEqual(
      [`${a}@2`, `${b}@2`].sort(),
    );
  });

  it('a skip made while the failing call is in flight wins over the STOP policy', async () => {
    world = await createWorld(kind);
    const victim = world.entityOnShard(3, 'racing');
    world.handler.setReply((call) => (call.entityId === victim && call.revision === 1 ? { delayMs: 600, then: 'error' } : 'ok'));
    const { engine, manager } = await world.startEngine([{ id: 'racy', policy: 'STOP' }]);
    await world.append(victim, 2);
    await until(() => world.handler.calls.some((c) => c.entityId === victim), 5_000, 'the call');
    expect(await manager.skip('racy', 3)).toBe(true); // while the handler is still busy with it
    await until(() => world.handler.accepted.some((c) => c.entityId === victim && c.revision === 2), 5_000, 'the next event');
    expect(world.handler.calls.filter((c) => c.entityId === victim).map((c) => c.revision)).toEqual([1, 2]);
    expect(engine.status().find((s) => s.shard === 3)).toMatchObject({ stopped: false, stops: 0 });
  });

  it('manager: offsets per shard (0 when nothing processed), NOT_FOUND for an unknown read side, INVALID_ARGUMENT for a bad shard', async () => {
    world = await createWorld(kind);
    const { manager } = await world.startEngine([{ id: 'known' }]);
    expect(await manager.latestOffsets('known')).toEqual([0, 1, 2, 3].map((shard) => ({ shard, position: 0n })));
    await world.append(world.entityOnShard(1, 'o'));
    await until(async () => (await manager.latestOffset('known', 1)).position > 0n, 5_000, 'offset');
    expect((await manager.latestOffset('known', 1)).position).toBe(await world.journal.latestPosition(1));
    expect(await manager.latestOffset('known', 0)).toEqual({ shard: 0, position: 0n });
    await expect(manager.latestOffsets('nope')).rejects.toBeInstanceOf(NotFoundError);
    await expect(manager.pause('nope', 1)).rejects.toBeInstanceOf(NotFoundError);
    await expect(manager.latestOffset('known', NUM_SHARDS)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(manager.skip('known', -1)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(manager.restart('', 0)).rejects.toBeInstanceOf(InvalidArgumentError);
  });

  it('autoStart=false starts paused; offsets and pause flags survive a restart of the engine', async () => {
    world = await createWorld(kind);
    const first = await world.startEngine([{ id: 'lazy', autoStart: false }, { id: 'eager' }]);
    await world.append('s-1', 3);
    await until(() => world.handler.accepted.filter((c) => c.readSideId === 'eager').length === 3, 5_000, 'eager');
    await sleep(300);
    expect(world.handler.calls.filter((c) => c.readSideId === 'lazy')).toEqual([]);
    await first.manager.pause('eager', shardOf('s-2', NUM_SHARDS));
    await first.engine.close();

    // a new engine (as after a process restart): eager does not re-deliver, lazy stays paused
    const second = await world.startEngine([{ id: 'lazy', autoStart: false }, { id: 'eager' }]);
    await world.append('s-2');
    await sleep(500);
    expect(world.handler.calls.filter((c) => c.readSideId === 'eager')).toHaveLength(3);
    expect(world.handler.calls.filter((c) => c.readSideId === 'lazy')).toEqual([]);
    await second.manager.resume('eager');
    await second.manager.resume('lazy');
    await until(() => world.handler.accepted.filter((c) => c.readSideId === 'eager').length === 4, 5_000, 'eager');
    await until(() => world.handler.accepted.filter((c) => c.readSideId === 'lazy').length === 4, 5_000, 'lazy');
  });

  it('two engines on one database split the streams and deliver everything once', async () => {
    world = await createWorld(kind);
    const a = await world.startEngine([{ id: 'split' }]);
    const b = await world.startEngine([{ id: 'split' }]);
    await until(
      () => a.engine.status().filter((s) => s.owned).length === 2 && b.engine.status().filter((s) => s.owned).length === 2,
      10_000,
      '2/2',
    );
    const entities = Array.from({ length: 20 }, (_, i) => `split-${i}`);
    await Promise.all(entities.map((id) => world.append(id, 5)));
    await until(() => world.handler.accepted.length === 100, 10_000, 'all');
    await sleep(300);
    expect(world.handler.calls).toHaveLength(100);
    for (const id of entities) expect(revisionsByEntity(world.handler.accepted).get(id)).toEqual([1, 2, 3, 4, 5]);
    expect(a.engine.status().filter((s) => s.delivered > 0).length).toBeGreaterThan(0);
    expect(b.engine.status().filter((s) => s.delivered > 0).length).toBeGreaterThan(0);
  });
});

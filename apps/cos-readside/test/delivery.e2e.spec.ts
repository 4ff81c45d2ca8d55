// Read sides end to end: the built cos-readside process, a stock grpc-js read-side handler in its
// own process, events written with the real journal into the real PostgreSQL, and a stock grpc-js
// client of ReadSideManagerService.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { shardOf } from '@chiefofstate/core';
import { createJournal } from '@chiefofstate/journal';
import { testPostgresEnv, testStoreKinds } from '@chiefofstate/postgres/testing';
import { ReadSideManagerService } from '@chiefofstate/protocol';
import {
  eventPayload,
  newSchema,
  NUM_SHARDS,
  openStore,
  readSidesEnv,
  revisionsOf,
  sleep,
  startHandler,
  startReadside,
  until,
  type HandlerCall,
  type Readside,
  type ReadSideSpec,
  type Store,
} from './support/fixture.js';

const hasServer = (await testStoreKinds()).includes('postgres');

const SIDES: ReadSideSpec[] = [
  { id: 'projection' },
  { id: 'strict', policy: 'STOP' },
  { id: 'lenient', policy: 'SKIP' },
  { id: 'retry-stop', policy: 'REPLAY_STOP' },
  { id: 'retry-skip', policy: 'REPLAY_SKIP' },
  { id: 'managed', autoStart: false },
];

/** An entity id on `shard`, unique to the test. */
function onShard(shard: number, prefix: string): string {
  for (let i = 0; ; i++) if (shardOf(`${prefix}-${i}`, NUM_SHARDS) === shard) return `${prefix}-${i}`;
}

describe.runIf(hasServer)('cos-readside over real processes', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cos-readside-'));
  const schema = newSchema();
  let handler: Awaited<ReturnType<typeof startHandler>>;
  let readside: Readside;
  let store: Store;
  let env: Record<string, string>;

  const calls = (readSideId: string, entityId?: string): HandlerCall[] =>
    handler.calls().filter((c) => c.r === readSideId && (entityId === undefined || c.e === entityId));
  const accepted = (readSideId: string, entityId: string) => calls(readSideId, entityId).filter((c) => c.a === 'ok').map((c) => c.v);
  const manage = async (name: string, request: Record<string, unknown>) => {
    const method = ReadSideManagerService.methods.find((m) => m.name === name)!;
    const fields = Object.fromEntries(Object.entries(request).filter(([key]) => method.input.fields.some((f) => f.localName === key)));
    return (await readside.manager.unary(method, create(method.input, fields) as never)).response as unknown as Record<string, unknown>;
  };
  const manageFailure = async (name: string, request: Record<string, unknown>) => {
    try {
      await manage(name, request);
    } catch (error) {
      return { code: (error as grpc.ServiceError).code, details: (error as grpc.ServiceError).details };
    }
    throw new Error(`${name} did not fail`);
  };
  const offsetsOf = async (readSideId: string) =>
    ((await manage('GetLatestOffset', { readSideId }))['offsets'] as { clusterShardNumber: bigint; offset: bigint }[]).map((o) => o.offset);

  beforeAll(async () => {
    handler = await startHandler(join(dir, 'rules.json'));
    env = { ...testPostgresEnv(schema), ...readSidesEnv(handler.port, SIDES) };
    readside = await startReadside(env); // it migrates the empty schema
    store = await openStore(schema);
  }, 90_000);

  afterAll(async () => {
    await readside?.stop();
    await handler?.kill();
    await store?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it('delivers every event of many entities, in order per entity, with the metadata headers, and commits the offsets', async () => {
    const entities = [...Array.from({ length: 60 }, (_, i) => `account-${i}`), 'compte-é', '账户-42', 'smile-🙂'];
    await Promise.all(entities.map((id) => store.append(id, 8)));
    await until(() => entities.every((id) => accepted('projection', id).length >= 8), 30_000, 'every event');
    await sleep(300);
    const received = revisionsOf(handler.calls(), 'projection');
    for (const id of entities) expect(received.get(id), id).toEqual([1, 2, 3, 4, 5, 6, 7, 8]); // once each, in order

    for (const call of calls('projection')) {
      expect(call.ev).toBe(`${call.e}@${call.v}`);
      expect(call.st).toBe(`state ${call.v}`);
      expect(call.t).toBe(String(shardOf(call.e, NUM_SHARDS)));
      if (/^[\x20-\x7e]*$/.test(call.e)) expect(call.h).toBe(call.e);
      else expect(decodeURIComponent(call.h!)).toBe(call.e);
    }
    expect(calls('projection', 'compte-é')[0]!.h).toBe('compte-%C3%A9');
    expect(calls('projection', '账户-42')[0]!.h).toBe('%E8%B4%A6%E6%88%B7-42');
    expect(calls('projection', 'smile-🙂')[0]!.h).toBe('smile-%F0%9F%99%82');

    const latest = await store.latestPositions();
    await until(async () => (await offsetsOf('projection')).every((offset, shard) => offset === latest[shard]), 5_000, 'offsets');
    const one = await manage('GetLatestOffsetByShard', { readSideId: 'projection', clusterShardNumber: 3n });
    expect(one['offsets']).toMatchObject({ clusterShardNumber: 3n, offset: latest[3] });
  });

  it('STOP stops only the failing shard, nothing after it in that shard is delivered, and SkipOffsetByShard skips exactly that event', async () => {
    const shard = 2;
    const poison = onShard(shard, 'poison-stop');
    const behind = onShard(shard, 'behind-stop');
    const elsewhere = onShard(5, 'elsewhere-stop');
    handler.setRules([{ readSideId: 'strict', entityId: poison, revision: 2, answer: 'error' }]);
    await store.append(poison, 3);
    await store.append(behind, 2);
    await store.append(elsewhere, 2);
    await until(() => accepted('strict', elsewhere).length === 2, 10_000, 'the other shard');
    await until(() => calls('strict', poison).length === 2, 10_000, 'the failure');
    await sleep(1_000);
    expect(calls('strict', poison).map((c) => `${c.v}:${c.a}`)).toEqual(['1:ok', '2:error']); // no retry
    expect(calls('strict', behind)).toEqual([]); // held behind the stopped event
    await readside.waitFor(/shard stopped by the failure policy/, 10_000);

    expect(await manage('SkipOffsetByShard', { readSideId: 'strict', clusterShardNumber: BigInt(shard) })).toMatchObject({ successful: true });
    await until(() => accepted('strict', behind).length === 2, 10_000, 'after the skip');
    expect(accepted('strict', poison)).toEqual([1, 3]);
    expect(calls('strict', poison).filter((c) => c.v === 2)).toHaveLength(1);
  });

  it('SKIP skips a failing event (successful=false) after one attempt and goes on', async () => {
    const poison = onShard(4, 'poison-skip');
    handler.setRules([{ readSideId: 'lenient', entityId: poison, revision: 2, answer: 'unsuccessful' }]);
    await store.append(poison, 3);
    await until(() => accepted('lenient', poison).length === 2, 10_000, 'the rest');
    expect(calls('lenient', poison).map((c) => `${c.v}:${c.a}`)).toEqual(['1:ok', '2:unsuccessful', '3:ok']);
  });

  it('REPLAY_SKIP retries 5 times with backoff, then skips; REPLAY_STOP retries, then stops until resumed', async () => {
    const poison = onShard(6, 'poison-replay');
    handler.setRules([
      { readSideId: 'retry-skip', entityId: poison, revision: 1, answer: 'error' },
      { readSideId: 'retry-stop', entityId: poison, revision: 1, answer: 'error' },
    ]);
    const startedAt = Date.now();
    await store.append(poison, 2);
    await until(() => accepted('retry-skip', poison).includes(2), 20_000, 'REPLAY_SKIP to move on');
    const tookMs = Date.now() - startedAt;
    expect(calls('retry-skip', poison).map((c) => `${c.v}:${c.a}`)).toEqual([
      ...Array.from({ length: 6 }, () => '1:error'),
      '2:ok',
    ]);
    expect(tookMs).toBeGreaterThan(4_000); // 0.2 + 0.4 + 0.8 + 1.6 + 3.2 s of backoff, ±20%

    await until(() => calls('retry-stop', poison).length === 6, 10_000, 'REPLAY_STOP retries');
    await sleep(1_000);
    expect(calls('retry-stop', poison).map((c) => `${c.v}:${c.a}`)).toEqual(Array.from({ length: 6 }, () => '1:error'));
    expect(readside.output()).toMatch(/"readSideId":"retry-stop".*shard stopped/);

    handler.setRules([]);
    expect(await manage('ResumeReadSideByShard', { readSideId: 'retry-stop', clusterShardNumber: 6n })).toMatchObject({ successful: true });
    await until(() => accepted('retry-stop', poison).length === 2, 10_000, 'resumed');
    expect(accepted('retry-stop', poison)).toEqual([1, 2]);
  });

  it('autoStart=false starts paused; the manager resumes, pauses one shard, restarts and answers NOT_FOUND / INVALID_ARGUMENT', async () => {
    // nothing so far reached the paused read side, and its offsets are 0
    expect(calls('managed')).toEqual([]);
    expect(await offsetsOf('managed')).toEqual(Array.from({ length: NUM_SHARDS }, () => 0n));

    expect(await manage('ResumeReadSide', { readSideId: 'managed' })).toMatchObject({ successful: true });
    const latest = await store.latestPositions();
    await until(async () => (await offsetsOf('managed')).every((offset, shard) => offset === latest[shard]), 30_000, 'caught up');
    const caughtUp = calls('managed').length;
    expect(caughtUp).toBeGreaterThan(500);

    // pause one shard: its new events wait, the others flow
    const held = onShard(1, 'held');
    const flowing = onShard(0, 'flowing');
    expect(await manage('PauseReadSideByShard', { readSideId: 'managed', clusterShardNumber: 1n })).toMatchObject({ successful: true });
    await store.append(held, 2);
    await store.append(flowing, 2);
    await until(() => accepted('managed', flowing).length === 2, 10_000, 'unpaused shard');
    await sleep(500);
    expect(calls('managed', held)).toEqual([]);
    expect(await manage('ResumeReadSideByShard', { readSideId: 'managed', clusterShardNumber: 1n })).toMatchObject({ successful: true });
    await until(() => accepted('managed', held).length === 2, 10_000, 'resumed shard');

    // restart one shard: its events again, from the start; the others untouched
    const before = calls('managed').length;
    const shard1Events = handler.calls().filter((c) => c.r === 'projection' && shardOf(c.e, NUM_SHARDS) === 1 && c.a === 'ok').length;
    expect(await manage('RestartReadSideByShard', { readSideId: 'managed', clusterShardNumber: 1n })).toMatchObject({ successful: true });
    await until(() => calls('managed').length >= before + shard1Events, 20_000, 'shard replay');
    await sleep(500);
    const replayed = calls('managed').slice(before);
    expect(replayed.every((c) => shardOf(c.e, NUM_SHARDS) === 1)).toBe(true);
    expect(revisionsOf(replayed, 'managed').get(held)).toEqual([1, 2]);

    // restart all: everything again
    const beforeAll = calls('managed').length;
    expect(await manage('RestartReadSide', { readSideId: 'managed' })).toMatchObject({ successful: true });
    await until(() => calls('managed').length >= beforeAll + caughtUp, 30_000, 'full replay');

    // errors
    for (const name of ['GetLatestOffset', 'PauseReadSide', 'SkipOffset', 'RestartReadSideByShard']) {
      expect(await manageFailure(name, { readSideId: 'nope', clusterShardNumber: 0n })).toMatchObject({ code: grpc.status.NOT_FOUND });
    }
    expect(await manageFailure('PauseReadSideByShard', { readSideId: 'managed', clusterShardNumber: BigInt(NUM_SHARDS) })).toEqual({
      code: grpc.status.INVALID_ARGUMENT,
      details: `cluster_shard_number ${NUM_SHARDS} is out of range 0..${NUM_SHARDS - 1}`,
    });
  });

  it('delivers an event whose transaction committed after later appends were attempted, skipping nothing', async () => {
    const late = onShard(3, 'late');
    const early = onShard(3, 'early');
    const after = onShard(3, 'after');
    await store.append(early, 1);
    await until(() => accepted('projection', early).length === 1, 10_000, 'early');
    // a writer that took its position and holds its transaction open ...
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const lateWriter = store.database.kysely.transaction().execute(async (trx) => {
      const journal = createJournal({ database: { ...store.database, kysely: trx }, numShards: NUM_SHARDS });
      await journal.append({ entityId: late, expectedRevision: 0n, events: [eventPayload(late, 1)] });
      await held;
    });
    await sleep(300);
    // ... while another append of the same shard is made, which must wait for it
    const afterWrite = store.append(after, 1);
    await sleep(1_000);
    expect(calls('projection', late)).toEqual([]);
    expect(calls('projection', after)).toEqual([]);
    release();
    await lateWriter;
    await afterWrite;
    await until(() => accepted('projection', late).length === 1 && accepted('projection', after).length === 1, 10_000, 'both');
    const order = calls('projection').filter((c) => c.e === late || c.e === after).map((c) => c.e);
    expect(order).toEqual([late, after]);
  });

  it('offsets and stored pauses survive a restart of the process (SIGTERM, then a new process)', async () => {
    const pausedShard = 7;
    expect(await manage('PauseReadSideByShard', { readSideId: 'managed', clusterShardNumber: BigInt(pausedShard) })).toMatchObject({ successful: true });
    const latest = await store.latestPositions();
    await until(async () => (await offsetsOf('projection')).every((offset, shard) => offset === latest[shard]), 10_000, 'projection caught up');
    const deliveredBefore = calls('projection').length;

    expect(await readside.stop('SIGTERM')).toBe(0);
    expect(readside.output()).toMatch(/cos-readside stopped/);
    readside = await startReadside(env);

    const fresh = [onShard(pausedShard, 'fresh'), onShard(0, 'fresh')];
    for (const id of fresh) await store.append(id, 2);
    await until(() => fresh.every((id) => accepted('projection', id).length === 2), 10_000, 'new events');
    await sleep(500);
    // only the new events: nothing committed before the restart came again
    expect(calls('projection').length).toBe(deliveredBefore + 4);
    // the pause held across the restart
    await until(() => accepted('managed', fresh[1]!).length === 2, 30_000, 'managed, unpaused shard');
    expect(calls('managed', fresh[0]!)).toEqual([]);
  });
});

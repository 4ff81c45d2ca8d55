// Fencing between replicas: a replica that takes over a shard raises the shard's fence to its
// lease epoch, and appends of the previous owner (a lower epoch) then fail, nothing written.
import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FencedError, InvalidArgumentError, shardOf } from '@chiefofstate/core';
import { migrateToLatest } from '@chiefofstate/postgres';
import { openTestDatabase, testStoreKinds, type TestDatabase } from '@chiefofstate/postgres/testing';
import { createJournal, type Journal } from './journal.js';
import { journalMigrations } from './schema.js';

const NUM_SHARDS = 8;
const payload = (text: string) => new TextEncoder().encode(text);
let counter = 0;

/** A fresh entity id of `shard`. */
function idIn(shard: number): string {
  for (;;) {
    const id = `f-${++counter}-${randomBytes(3).toString('hex')}`;
    if (shardOf(id, NUM_SHARDS) === shard) return id;
  }
}

describe.each(await testStoreKinds())('journal fencing on %s', (kind) => {
  let database: TestDatabase;
  /** the previous owner's and the next owner's journals, both fencing */
  let previous: Journal;
  let next: Journal;
  /** a process of the previous release: no fencing */
  let unfenced: Journal;

  beforeAll(async () => {
    database = await openTestDatabase(kind);
    await migrateToLatest({ database, migrations: journalMigrations });
    previous = createJournal({ database, numShards: NUM_SHARDS, fencing: true });
    next = createJournal({ database, numShards: NUM_SHARDS, fencing: true });
    unfenced = createJournal({ database, numShards: NUM_SHARDS });
  });
  afterAll(async () => {
    await previous?.close();
    await next?.close();
    await unfenced?.close();
    await database?.dispose();
  });

  const rows = async (entityId: string) => {
    const { rows: found } = await sql<{ revision: string }>`
      SELECT revision::text FROM cos_journal WHERE entity_id = ${entityId} ORDER BY revision`.execute(database.kysely);
    return found.map((row) => Number(row.revision));
  };

  it("refuses the previous owner's append once the next owner fenced the shard, writing nothing", async () => {
    const id = idIn(1);
    await previous.fenceShard(1, 1n);
    await previous.append({ entityId: id, expectedRevision: 0n, events: [payload('a')], fence: 1n });

    await next.fenceShard(1, 2n);
    const stale = await previous.append({ entityId: id, expectedRevision: 1n, events: [payload('b')], fence: 1n }).catch((e: unknown) => e);
    expect(stale).toBeInstanceOf(FencedError);
    expect((stale as Error).message).toContain(JSON.stringify(id));
    // no epoch at all counts as 0
    await expect(previous.append({ entityId: id, expectedRevision: 1n, events: [payload('b')] })).rejects.toBeInstanceOf(FencedError);
    expect(await rows(id)).toEqual([1]);

    // the next owner writes on, and so would an even later one
    await next.append({ entityId: id, expectedRevision: 1n, events: [payload('c')], fence: 2n });
    await next.append({ entityId: id, expectedRevision: 2n, events: [payload('d')], fence: 3n });
    expect(await rows(id)).toEqual([1, 2, 3]);
  });

  it('never lowers a fence: raising it to a lower epoch fails with FencedError, to the same one succeeds', async () => {
    await next.fenceShard(2, 5n);
    await next.fenceShard(2, 5n);
    const lower = await previous.fenceShard(2, 4n).catch((e: unknown) => e);
    expect(lower).toBeInstanceOf(FencedError);
    expect((lower as Error).message).toContain('superseded by epoch 5');
    const id = idIn(2);
    await expect(previous.append({ entityId: id, expectedRevision: 0n, events: [payload('x')], fence: 4n })).rejects.toBeInstanceOf(
      FencedError,
    );
    await next.append({ entityId: id, expectedRevision: 0n, events: [payload('x')], fence: 5n });
    expect(await rows(id)).toEqual([1]);
    await expect(next.fenceShard(NUM_SHARDS, 1n)).rejects.toBeInstanceOf(InvalidArgumentError);
  });

  it('fails only the fenced appends of a group commit; the others of the batch are written', async () => {
    await next.fenceShard(3, 9n);
    const [fencedId, okId, otherShard] = [idIn(3), idIn(3), idIn(4)];
    const outcomes = await Promise.allSettled([
      previous.append({ entityId: okId, expectedRevision: 0n, events: [payload('1')], fence: 9n }),
      previous.append({ entityId: fencedId, expectedRevision: 0n, events: [payload('1'), payload('2')], fence: 8n }),
      previous.append({ entityId: otherShard, expectedRevision: 0n, events: [payload('1')], fence: 1n }),
    ]);
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((outcomes[1] as PromiseRejectedResult).reason).toBeInstanceOf(FencedError);
    expect(await rows(okId)).toEqual([1]);
    expect(await rows(fencedId)).toEqual([]);
    expect(await rows(otherShard)).toEqual([1]);
  });

  it('costs nothing without fencing (one process): fences are not read, and appends of unfenced shards go through', async () => {
    await next.fenceShard(5, 3n);
    const id = idIn(5);
    // the previous release's function, without epochs, is kept for rolling upgrades
    await unfenced.append({ entityId: id, expectedRevision: 0n, events: [payload('old release')] });
    const free = idIn(6);
    await previous.append({ entityId: free, expectedRevision: 0n, events: [payload('never fenced')] });
    expect(await rows(id)).toEqual([1]);
    expect(await rows(free)).toEqual([1]);
    await expect(previous.append({ entityId: idIn(0), expectedRevision: 0n, events: [payload('x')], fence: -1n })).rejects.toBeInstanceOf(
      InvalidArgumentError,
    );
  });
});

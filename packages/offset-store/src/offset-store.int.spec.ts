import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidArgumentError, StoreError } from '@chiefofstate/core';
import { createDatabase, migrateToLatest, type Database } from '@chiefofstate/postgres';
import {
  openTestDatabase,
  testStoreKinds,
  uniqueSchemaName,
  type TestDatabase,
  type TestStoreKind,
} from '@chiefofstate/postgres/testing';
import { offsetStoreMigrations } from './migrations.js';
import { createOffsetStore, type OffsetStore } from './offset-store.js';

let counter = 0;
/** Each test uses its own read side ids, so the tests of a suite can share one database. */
const readSide = (name: string) => `${name}-${++counter}`;
const positions = (offsets: { position: bigint }[]) => offsets.map((o) => o.position);
const pausedFlags = (offsets: { paused: boolean }[]) => offsets.map((o) => o.paused);

/**
 * A database that can be closed and opened again with its data: PGlite in a data directory, or
 * a schema on the real PostgreSQL.
 */
async function reopenable(kind: TestStoreKind) {
  const schema = uniqueSchemaName();
  const dataDir = kind === 'embedded' ? await mkdtemp(join(tmpdir(), 'cos-offsets-')) : undefined;
  const open = async (): Promise<Database> =>
    dataDir !== undefined ? createDatabase({ kind: 'embedded', dataDir, schema }) : openTestDatabase(kind, schema);
  const cleanUp = async () => {
    if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true });
    else await (await openTestDatabase(kind, schema)).dispose();
  };
  return { open, cleanUp };
}

describe.each(await testStoreKinds())('offset store on %s', (kind) => {
  let database: TestDatabase;
  let store: OffsetStore;
  beforeAll(async () => {
    database = await openTestDatabase(kind);
    await migrateToLatest({ database, migrations: offsetStoreMigrations });
    store = createOffsetStore({ database });
  });
  afterAll(async () => {
    await database?.dispose();
  });

  it('reads a missing row as position 0n, not paused', async () => {
    const id = readSide('missing');
    expect(await store.get(id, 3)).toEqual({ readSideId: id, shard: 3, position: 0n, paused: false });
    expect(await store.list(id, 2)).toEqual([
      { readSideId: id, shard: 0, position: 0n, paused: false },
      { readSideId: id, shard: 1, position: 0n, paused: false },
    ]);
  });

  it('ensure creates missing rows with the given pause flag and never changes existing ones', async () => {
    const running = readSide('ensure');
    await store.ensure(running, 3, { paused: false });
    expect(await store.list(running, 3)).toEqual([0, 1, 2].map((shard) => ({ readSideId: running, shard, position: 0n, paused: false })));

    await store.commit(running, 1, 42n);
    await store.setPaused(running, true, 2);
    await store.ensure(running, 3, { paused: true }); // again, with the other flag: no change
    await store.ensure(running, 3, { paused: false });
    let offsets = await store.list(running, 3);
    expect(positions(offsets)).toEqual([0n, 42n, 0n]);
    expect(pausedFlags(offsets)).toEqual([false, false, true]);

    // more shards later: only the new ones are created, with the new flag
    await store.ensure(running, 5, { paused: true });
    offsets = await store.list(running, 5);
    expect(positions(offsets)).toEqual([0n, 42n, 0n, 0n, 0n]);
    expect(pausedFlags(offsets)).toEqual([false, false, true, true, true]);

    const manual = readSide('autostart-false');
    await store.ensure(manual, 2, { paused: true });
    expect(pausedFlags(await store.list(manual, 2))).toEqual([true, true]);
  });

  it('list returns exactly shards 0..numShards-1 in order', async () => {
    const id = readSide('list');
    await store.ensure(id, 4, { paused: false });
    for (const shard of [3, 0, 2]) await store.commit(id, shard, BigInt(10 + shard));
    const offsets = await store.list(id, 3);
    expect(offsets.map((o) => o.shard)).toEqual([0, 1, 2]);
    expect(positions(offsets)).toEqual([10n, 0n, 12n]);
  });

  it('commits monotonically: a lower or equal position is refused', async () => {
    const id = readSide('monotonic');
    expect(await store.commit(id, 0, 10n)).toBe(true); // no row yet: created
    expect(await store.commit(id, 0, 5n)).toBe(false);
    expect(await store.commit(id, 0, 10n)).toBe(false);
    expect(await store.commit(id, 0, 0n)).toBe(false);
    expect((await store.get(id, 0)).position).toBe(10n);
    expect(await store.commit(id, 0, 11n)).toBe(true);
    const big = 9_007_199_254_740_993n;
    expect(await store.commit(id, 0, big)).toBe(true);
    expect((await store.get(id, 0)).position).toBe(big);
    expect((await store.get(id, 1)).position).toBe(0n); // other shards untouched
  });

  it('keeps the pause flag when committing', async () => {
    const id = readSide('commit-paused');
    await store.ensure(id, 1, { paused: true });
    await store.commit(id, 0, 3n);
    expect(await store.get(id, 0)).toEqual({ readSideId: id, shard: 0, position: 3n, paused: true });
  });

  it('ends at the maximum when several connections commit concurrently', async () => {
    // Separate handles (each with its own pool) on the real server; PGlite has one connection.
    const extra = kind === 'postgres' ? await Promise.all([1, 2].map(() => openTestDatabase(kind, database.schema))) : [];
    try {
      const stores = [store, ...extra.map((d) => createOffsetStore({ database: d }))];
      const id = readSide('concurrent');
      await store.ensure(id, 2, { paused: false });
      const values = Array.from({ length: 150 }, (_, i) => BigInt(i + 1)).sort(() => Math.random() - 0.5);
      const results = await Promise.all(values.map((p, i) => stores[i % stores.length]!.commit(id, 0, p)));
      expect((await store.get(id, 0)).position).toBe(150n);
      expect(results.filter(Boolean).length).toBeGreaterThanOrEqual(1);
      // the commit of 150 always advances: nothing higher exists
      expect(results[values.indexOf(150n)]).toBe(true);
      // concurrent first commits on a shard without a row race on the insert, and still do not fail
      const fresh = readSide('concurrent-fresh');
      await Promise.all(values.map((p, i) => stores[i % stores.length]!.commit(fresh, 1, p)));
      expect((await store.get(fresh, 1)).position).toBe(150n);
    } finally {
      for (const d of extra) await d.close();
    }
  });

  it('commitIf sets the position only when the stored one is still the expected one', async () => {
    const id = readSide('cas');
    // a missing row matches 0n
    expect(await store.commitIf(id, 0, 0n, 5n)).toBe(true);
    expect((await store.get(id, 0)).position).toBe(5n);
    expect(await store.commitIf(id, 0, 0n, 6n)).toBe(false);
    expect(await store.commitIf(id, 0, 4n, 6n)).toBe(false);
    expect(await store.commitIf(id, 0, 5n, 9n)).toBe(true);
    expect((await store.get(id, 0)).position).toBe(9n);
    // equal positions confirm without moving
    expect(await store.commitIf(id, 0, 9n, 9n)).toBe(true);
    expect(await store.commitIf(id, 0, 8n, 8n)).toBe(false);
    // a missing row does not match anything but 0n, and is not created
    expect(await store.commitIf(id, 1, 3n, 4n)).toBe(false);
    expect(await store.knownReadSides()).toContain(id);
    expect((await store.get(id, 1)).position).toBe(0n);
    // a row at 0n (after ensure or reset) matches 0n
    await store.ensure(id, 3, { paused: true });
    expect(await store.commitIf(id, 2, 0n, 1n)).toBe(true);
    expect(await store.get(id, 2)).toEqual({ readSideId: id, shard: 2, position: 1n, paused: true });
    await expect(store.commitIf(id, 0, 9n, 8n)).rejects.toThrow(InvalidArgumentError);
  });

  it('lets exactly one of several concurrent commitIf calls with the same expected position win', async () => {
    const extra = kind === 'postgres' ? await openTestDatabase(kind, database.schema) : undefined;
    try {
      const stores = [store, ...(extra ? [createOffsetStore({ database: extra })] : [])];
      const id = readSide('cas-race');
      await store.commit(id, 0, 10n);
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) => stores[i % stores.length]!.commitIf(id, 0, 10n, BigInt(11 + i))),
      );
      expect(results.filter(Boolean)).toHaveLength(1);
      expect((await store.get(id, 0)).position).toBe(BigInt(11 + results.indexOf(true)));
      // also on a shard without a row, where the winners race on the insert
      const fresh = await Promise.all(
        Array.from({ length: 20 }, (_, i) => stores[i % stores.length]!.commitIf(id, 1, 0n, BigInt(1 + i))),
      );
      expect(fresh.filter(Boolean)).toHaveLength(1);
    } finally {
      await extra?.close();
    }
  });

  it('reset moves one shard or all shards back to 0n and keeps the pause flags', async () => {
    const id = readSide('reset');
    const other = readSide('reset-other');
    await store.ensure(id, 3, { paused: false });
    for (const shard of [0, 1, 2]) await store.commit(id, shard, BigInt(100 + shard));
    await store.commit(other, 0, 7n);
    await store.setPaused(id, true, 1);

    await store.reset(id, 1);
    expect(positions(await store.list(id, 3))).toEqual([100n, 0n, 102n]);
    expect((await store.get(id, 1)).paused).toBe(true);
    // after a reset the shard commits from the start again
    expect(await store.commit(id, 1, 1n)).toBe(true);

    await store.reset(id);
    expect(positions(await store.list(id, 3))).toEqual([0n, 0n, 0n]);
    expect(pausedFlags(await store.list(id, 3))).toEqual([false, true, false]);
    expect((await store.get(other, 0)).position).toBe(7n);
  });

  it('pauses and resumes all shards or one', async () => {
    const id = readSide('pause');
    const other = readSide('pause-other');
    await store.ensure(id, 3, { paused: false });
    await store.ensure(other, 1, { paused: false });
    await store.setPaused(id, true);
    expect(pausedFlags(await store.list(id, 3))).toEqual([true, true, true]);
    await store.setPaused(id, false, 1);
    expect(pausedFlags(await store.list(id, 3))).toEqual([true, false, true]);
    await store.setPaused(id, false);
    expect(pausedFlags(await store.list(id, 3))).toEqual([false, false, false]);
    await store.setPaused(id, true, 2);
    expect(pausedFlags(await store.list(id, 3))).toEqual([false, false, true]);
    expect((await store.get(other, 0)).paused).toBe(false);
    // pausing a shard without a row stores the flag
    await store.setPaused(id, true, 7);
    expect(await store.get(id, 7)).toEqual({ readSideId: id, shard: 7, position: 0n, paused: true });
  });

  it('lists known read sides, sorted', async () => {
    const ids = [readSide('known-b'), readSide('known-a')];
    await store.ensure(ids[0]!, 1, { paused: false });
    await store.commit(ids[1]!, 4, 1n);
    const known = await store.knownReadSides();
    expect(known).toEqual([...known].sort());
    expect(known).toEqual(expect.arrayContaining(ids));
    expect(known).not.toContain(readSide('never-used'));
  });

  it('refuses invalid arguments', async () => {
    const id = readSide('invalid');
    await expect(store.get('', 0)).rejects.toThrow(InvalidArgumentError);
    await expect(store.get(id, -1)).rejects.toThrow(InvalidArgumentError);
    await expect(store.get(id, 1.5)).rejects.toThrow(InvalidArgumentError);
    await expect(store.list(id, 0)).rejects.toThrow(InvalidArgumentError);
    await expect(store.ensure(id, 0, { paused: false })).rejects.toThrow(InvalidArgumentError);
    await expect(store.commit(id, 0, -1n)).rejects.toThrow(InvalidArgumentError);
    await expect(store.commit(id, 0, 2n ** 63n)).rejects.toThrow(InvalidArgumentError);
    await expect(store.reset(id, -2)).rejects.toThrow(InvalidArgumentError);
    await expect(store.setPaused(id, true, 2 ** 31)).rejects.toThrow(InvalidArgumentError);
  });

  it('reports a database failure as StoreError', async () => {
    const unmigrated = await openTestDatabase(kind);
    try {
      const error = await createOffsetStore({ database: unmigrated }).get('x', 0).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(StoreError);
      expect((error as StoreError).cause).toBeDefined();
    } finally {
      await unmigrated.dispose();
    }
  });

  it('keeps offsets and pause flags across a reopen of the database', async () => {
    const { open, cleanUp } = await reopenable(kind);
    try {
      const first = await open();
      await migrateToLatest({ database: first, migrations: offsetStoreMigrations });
      let s = createOffsetStore({ database: first });
      await s.ensure('rs', 3, { paused: false });
      await s.setPaused('rs', true);
      await s.setPaused('rs', false, 1);
      await s.commit('rs', 0, 7n);
      await first.close();

      const second = await open();
      await migrateToLatest({ database: second, migrations: offsetStoreMigrations }); // a restart migrates again
      s = createOffsetStore({ database: second });
      expect(pausedFlags(await s.list('rs', 3))).toEqual([true, false, true]);
      expect(positions(await s.list('rs', 3))).toEqual([7n, 0n, 0n]);
      await s.setPaused('rs', false);
      await second.close();

      const third = await open();
      expect(pausedFlags(await createOffsetStore({ database: third }).list('rs', 3))).toEqual([false, false, false]);
      await third.close();
    } finally {
      await cleanUp();
    }
  });

  it('keeps offsets in a separate database independently of the journal database', async () => {
    // a second schema (or PGlite instance) standing for COS_READ_SIDE_OFFSET_DB_*
    const separate = await openTestDatabase(kind);
    try {
      await migrateToLatest({ database: separate, migrations: offsetStoreMigrations });
      const main = store;
      const offsets = createOffsetStore({ database: separate });
      const id = readSide('separate');
      await offsets.ensure(id, 2, { paused: true });
      await offsets.commit(id, 1, 30n);
      await main.commit(id, 1, 5n);
      expect(await offsets.get(id, 1)).toEqual({ readSideId: id, shard: 1, position: 30n, paused: true });
      expect(await main.get(id, 1)).toEqual({ readSideId: id, shard: 1, position: 5n, paused: false });
      expect(await offsets.knownReadSides()).toEqual([id]);
      await offsets.reset(id);
      expect((await main.get(id, 1)).position).toBe(5n);
    } finally {
      await separate.dispose();
    }
  });
});

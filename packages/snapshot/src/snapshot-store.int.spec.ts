import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '@chiefofstate/core';
import { migrateToLatest } from '@chiefofstate/postgres';
import { openTestDatabase, testStoreKinds, type TestDatabase } from '@chiefofstate/postgres/testing';
import { snapshotMigrations } from './migrations.js';
import { createSnapshotStore } from './snapshot-store.js';

const bytes = (...values: number[]) => new Uint8Array(values);
let counter = 0;
/** Each test uses its own entities, so the tests of a suite can share one database. */
const entity = (name: string) => `${name}-${++counter}`;

describe.each(await testStoreKinds())('snapshot store on %s', (kind) => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await openTestDatabase(kind);
    await migrateToLatest({ database, migrations: snapshotMigrations });
  });
  afterAll(async () => {
    await database?.dispose();
  });

  it('saves and loads the latest snapshot with its bytes, revision and write time', async () => {
    const store = createSnapshotStore({ database, retain: 3 });
    const id = entity('a');
    const before = Date.now();
    await store.save({ entityId: id, revision: 3n, payload: bytes(1, 2, 3) });
    await store.save({ entityId: id, revision: 6n, payload: bytes(4, 5) });
    const latest = await store.loadLatest(id);
    expect(latest?.entityId).toBe(id);
    expect(latest?.revision).toBe(6n);
    expect(latest?.payload).toBeInstanceOf(Uint8Array);
    expect([...(latest?.payload ?? [])]).toEqual([4, 5]);
    expect(latest?.writtenAt).toBeInstanceOf(Date);
    // the database clock may differ slightly from ours
    expect(Math.abs(latest!.writtenAt.getTime() - before)).toBeLessThan(60_000);
    expect((await store.list(id)).map((s) => s.revision)).toEqual([6n, 3n]);
  });

  it('returns nothing for an entity without snapshots', async () => {
    const store = createSnapshotStore({ database, retain: 2 });
    expect(await store.loadLatest(entity('none'))).toBeUndefined();
    expect(await store.list(entity('none'))).toEqual([]);
  });

  it('keeps revisions beyond the safe integer range exact and empty payloads empty', async () => {
    const store = createSnapshotStore({ database, retain: 2 });
    const id = entity('big');
    const revision = 9_007_199_254_740_993n;
    await store.save({ entityId: id, revision, payload: bytes() });
    const latest = await store.loadLatest(id);
    expect(latest?.revision).toBe(revision);
    expect(latest?.payload.length).toBe(0);
  });

  it('is idempotent for the same entity and revision, keeping the first payload', async () => {
    const store = createSnapshotStore({ database, retain: 2 });
    const id = entity('idem');
    expect(await store.save({ entityId: id, revision: 5n, payload: bytes(1) })).toEqual({ oldestRetainedRevision: 5n });
    expect(await store.save({ entityId: id, revision: 5n, payload: bytes(2) })).toEqual({ oldestRetainedRevision: 5n });
    const all = await store.list(id);
    expect(all).toHaveLength(1);
    expect([...all[0]!.payload]).toEqual([1]);
  });

  it('keeps only the N newest snapshots and reports the oldest kept', async () => {
    const store = createSnapshotStore({ database, retain: 3 });
    const id = entity('ret');
    const oldest: bigint[] = [];
    for (const revision of [10n, 20n, 30n, 40n, 50n]) {
      oldest.push((await store.save({ entityId: id, revision, payload: bytes(Number(revision)) })).oldestRetainedRevision);
    }
    expect(oldest).toEqual([10n, 10n, 10n, 20n, 30n]);
    const kept = await store.list(id);
    expect(kept.map((s) => s.revision)).toEqual([50n, 40n, 30n]);
    expect(kept.map((s) => [...s.payload])).toEqual([[50], [40], [30]]);
  });

  it('prunes a snapshot older than the retained ones right away', async () => {
    const store = createSnapshotStore({ database, retain: 2 });
    const id = entity('late');
    await store.save({ entityId: id, revision: 20n, payload: bytes(20) });
    await store.save({ entityId: id, revision: 30n, payload: bytes(30) });
    const result = await store.save({ entityId: id, revision: 10n, payload: bytes(10) });
    expect(result.oldestRetainedRevision).toBe(20n);
    expect((await store.list(id)).map((s) => s.revision)).toEqual([30n, 20n]);
  });

  it('keeps one snapshot with retain = 1', async () => {
    const store = createSnapshotStore({ database, retain: 1 });
    const id = entity('one');
    await store.save({ entityId: id, revision: 1n, payload: bytes(1) });
    const result = await store.save({ entityId: id, revision: 2n, payload: bytes(2) });
    expect(result.oldestRetainedRevision).toBe(2n);
    expect((await store.list(id)).map((s) => s.revision)).toEqual([2n]);
  });

  it('keeps entities independent', async () => {
    const store = createSnapshotStore({ database, retain: 2 });
    const [a, b] = [entity('ind'), entity('ind')];
    for (const revision of [1n, 2n, 3n]) await store.save({ entityId: a, revision, payload: bytes(1) });
    await store.save({ entityId: b, revision: 1n, payload: bytes(2) });
    expect((await store.list(a)).map((s) => s.revision)).toEqual([3n, 2n]);
    expect((await store.list(b)).map((s) => s.revision)).toEqual([1n]);
    expect([...(await store.loadLatest(b))!.payload]).toEqual([2]);
  });

  it('treats entity ids exactly, including ones that differ only in case or unicode', async () => {
    const store = createSnapshotStore({ database, retain: 1 });
    const base = entity('Ünïcode-ID');
    const ids = [base, base.toLowerCase(), `${base} `];
    for (const [i, id] of ids.entries()) await store.save({ entityId: id, revision: 1n, payload: bytes(i) });
    for (const [i, id] of ids.entries()) expect([...(await store.loadLatest(id))!.payload]).toEqual([i]);
  });

  it('keeps retention under concurrent saves of one entity, without errors', async () => {
    // Two handles on one schema where the backend allows it, so saves really run in parallel.
    const other = kind === 'postgres' ? await openTestDatabase(kind, database.schema) : undefined;
    try {
      const stores = [database, other ?? database].map((d) => createSnapshotStore({ database: d, retain: 3 }));
      const id = entity('conc');
      // Rounds of new revisions saved all at once: every round must leave exactly the 3 newest.
      const perRound = 8;
      for (let round = 0; round < 12; round++) {
        const revisions = Array.from({ length: perRound }, (_, i) => BigInt(round * perRound + i + 1));
        const results = await Promise.all(
          revisions.map((revision, i) => stores[i % 2]!.save({ entityId: id, revision, payload: bytes(Number(revision % 256n)) })),
        );
        expect(results.every((r) => r.oldestRetainedRevision >= 1n)).toBe(true);
        const top = BigInt((round + 1) * perRound);
        expect((await stores[0]!.list(id)).map((s) => s.revision)).toEqual([top, top - 1n, top - 2n]);
      }
    } finally {
      await other?.close();
    }
  });

  it('accepts concurrent saves of the same revision without errors, keeping one row', async () => {
    const other = kind === 'postgres' ? await openTestDatabase(kind, database.schema) : undefined;
    try {
      const stores = [database, other ?? database].map((d) => createSnapshotStore({ database: d, retain: 2 }));
      const id = entity('dup');
      await stores[0]!.save({ entityId: id, revision: 1n, payload: bytes(1) });
      const results = await Promise.all(
        Array.from({ length: 12 }, (_, i) => stores[i % 2]!.save({ entityId: id, revision: 2n, payload: bytes(2) })),
      );
      expect(results.map((r) => r.oldestRetainedRevision)).toEqual(Array(12).fill(1n));
      expect((await stores[0]!.list(id)).map((s) => s.revision)).toEqual([2n, 1n]);
    } finally {
      await other?.close();
    }
  });

  it('refuses a retention below 1 and negative revisions', async () => {
    expect(() => createSnapshotStore({ database, retain: 0 })).toThrow(InvalidArgumentError);
    expect(() => createSnapshotStore({ database, retain: 1.5 })).toThrow(InvalidArgumentError);
    const store = createSnapshotStore({ database, retain: 1 });
    await expect(store.save({ entityId: entity('neg'), revision: -1n, payload: bytes() })).rejects.toThrow(
      InvalidArgumentError,
    );
  });
});

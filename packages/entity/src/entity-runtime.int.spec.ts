import { randomBytes } from 'node:crypto';
import { fromBinary } from '@bufbuild/protobuf';
import { DeadlineExceededError, HandlerFailedError, NotFoundError } from '@chiefofstate/core';
import { createJournal, journalMigrations, type Journal } from '@chiefofstate/journal';
import { mergeMigrations, migrateToLatest } from '@chiefofstate/postgres';
import { openTestDatabase, testStoreKinds, type TestDatabase } from '@chiefofstate/postgres/testing';
import { EventWrapperSchema, StateWrapperSchema } from '@chiefofstate/protocol';
import { createSnapshotStore, snapshotMigrations, type SnapshotStore } from '@chiefofstate/snapshot';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createEntityRuntime, type EntityRuntime, type EntityRuntimeOptions } from './entity-runtime.js';
import type { JournalPort, SnapshotPort } from './ports.js';
import { str, textOf, useTestHandler } from './test-support/test-handler.js';

/*
 * The runtime on the real stores: @chiefofstate/journal and @chiefofstate/snapshot over the
 * embedded PostgreSQL (PGlite) and the real server when reachable (always with CI=true), with
 * the write handler a real gRPC service on loopback.
 */

let counter = 0;
const newId = (prefix = 'e') => `${prefix}-${++counter}-${randomBytes(3).toString('hex')}`;

const handler = useTestHandler();

describe.each(await testStoreKinds())('entity runtime on the %s store', (kind) => {
  let database: TestDatabase;
  let journal: Journal;
  let snapshots: SnapshotStore;
  const runtimes: EntityRuntime[] = [];

  // The real stores satisfy the runtime's ports as they are.
  const ports = (): { journal: JournalPort; snapshots: SnapshotPort } => ({ journal, snapshots });

  function runtime(options: Partial<EntityRuntimeOptions> = {}): EntityRuntime {
    const created = createEntityRuntime({ ...ports(), handler: handler.client(), ...options });
    runtimes.push(created);
    return created;
  }

  const send = (r: EntityRuntime, entityId: string, command: string, extra: object = {}) =>
    r.processCommand({ entityId, command: str(command), ...extra });

  const stored = async (entityId: string) =>
    (await journal.readEntity(entityId, { fromRevision: 0n })).map((e) => ({
      revision: e.revision,
      wrapper: fromBinary(EventWrapperSchema, e.payload),
    }));

  beforeAll(async () => {
    database = await openTestDatabase(kind);
    await migrateToLatest({ database, migrations: mergeMigrations(journalMigrations, snapshotMigrations) });
    journal = createJournal({ database, numShards: 4 });
    snapshots = createSnapshotStore({ database, retain: 2 });
  });
  afterEach(async () => {
    await Promise.all(runtimes.splice(0).map((r) => r.close()));
  });
  afterAll(async () => {
    await journal?.close();
    await database?.dispose();
  });

  it('persists 200 concurrent commands to one entity as revisions 1..200, each once', async () => {
    const r = runtime();
    const id = newId('hot');
    const replies = await Promise.all(Array.from({ length: 200 }, (_, i) => send(r, id, `emit:${i}`)));
    expect(replies.map((x) => x.meta.revisionNumber)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
    const events = await stored(id);
    expect(events.map((e) => e.revision)).toEqual(Array.from({ length: 200 }, (_, i) => BigInt(i + 1)));
    expect(events.map((e) => textOf(e.wrapper.event))).toEqual(Array.from({ length: 200 }, (_, i) => String(i)));
    expect(events.map((e) => e.wrapper.meta?.revisionNumber)).toEqual(
      Array.from({ length: 200 }, (_, i) => i + 1),
    );
  });

  it('writes many entities in parallel, each with consecutive revisions', async () => {
    const r = runtime();
    const ids = Array.from({ length: 40 }, () => newId('par'));
    await Promise.all(ids.flatMap((id) => [send(r, id, 'emit:a'), send(r, id, 'emit:b,c'), send(r, id, 'emit:d')]));
    for (const id of ids) {
      const events = await stored(id);
      expect(events.map((e) => e.revision)).toEqual([1n, 2n, 3n, 4n]);
      expect(textOf(events[3]!.wrapper.resultingState)).toBe('a,b,c,d');
    }
  });

  it('appends the events of one command atomically and recovers from the newest one', async () => {
    const id = newId('multi');
    const first = runtime();
    const reply = await send(first, id, 'emit:a,b,c');
    const events = await stored(id);
    expect(events.map((e) => [e.revision, textOf(e.wrapper.event), textOf(e.wrapper.resultingState)])).toEqual([
      [1n, 'a', 'a'],
      [2n, 'b', 'a,b'],
      [3n, 'c', 'a,b,c'],
    ]);
    const second = runtime();
    expect(await second.getState(id)).toEqual(reply);
    const next = await send(second, id, 'emit:d');
    expect(next.meta.revisionNumber).toBe(4);
    expect(textOf(next.state)).toBe('a,b,c,d');
  });

  it('persists nothing when the handler fails or the deadline passed', async () => {
    const r = runtime();
    const id = newId('err');
    const before = await journal.latestPosition();
    await expect(send(r, id, 'fail')).rejects.toBeInstanceOf(HandlerFailedError);
    await expect(send(r, id, 'emit:a,!empty')).rejects.toThrow('event handler replied with empty state');
    await expect(send(r, id, 'slow:300:a', { deadline: Date.now() + 100 })).rejects.toBeInstanceOf(
      DeadlineExceededError,
    );
    expect(await stored(id)).toEqual([]);
    await expect(r.getState(id)).rejects.toBeInstanceOf(NotFoundError);
    // other tests of this file may append concurrently, but none to this entity
    expect(await journal.latestPosition()).toBeGreaterThanOrEqual(before);
  });

  it('retries on conflict when two runtimes write one entity', async () => {
    const a = runtime({ maxAttempts: 50 });
    const b = runtime({ maxAttempts: 50 });
    const id = newId('shared');
    await send(a, id, 'emit:a0');
    await send(b, id, 'emit:b0');
    const stale = await send(a, id, 'emit:a1'); // a's cache is at revision 1: conflict, reload, retry
    expect(stale.meta.revisionNumber).toBe(3);
    expect(textOf(stale.state)).toBe('a0,b0,a1');
    const replies = await Promise.all(
      Array.from({ length: 30 }, (_, i) => send(i % 2 === 0 ? a : b, id, `emit:${i}`)),
    );
    expect(new Set(replies.map((x) => x.meta.revisionNumber)).size).toBe(30);
    const events = await stored(id);
    expect(events.map((e) => e.revision)).toEqual(Array.from({ length: 33 }, (_, i) => BigInt(i + 1)));
    // every event's state is built on the one before it: no lost update
    for (let i = 1; i < events.length; i++) {
      expect(textOf(events[i]!.wrapper.resultingState)).toBe(
        `${textOf(events[i - 1]!.wrapper.resultingState)},${textOf(events[i]!.wrapper.event)}`,
      );
    }
  });

  it('snapshots on the frequency and deletes older events logically', async () => {
    const r = runtime({ snapshotPolicy: { enabled: true, frequency: 2 }, logicalDeletion: true });
    const id = newId('snap');
    for (const e of ['a', 'b', 'c', 'd', 'e', 'f', 'g']) await send(r, id, `emit:${e}`);
    await r.close(); // waits for the background saves
    const kept = await snapshots.list(id);
    expect(kept.map((s) => s.revision)).toEqual([6n, 4n]);
    const newest = fromBinary(StateWrapperSchema, kept[0]!.payload);
    expect(textOf(newest.state)).toBe('a,b,c,d,e,f');
    expect(newest.meta?.revisionNumber).toBe(6);
    expect((await stored(id)).map((e) => e.revision)).toEqual([4n, 5n, 6n, 7n]);
    // recovery still sees the newest state
    const again = runtime();
    expect(textOf((await again.getState(id)).state)).toBe('a,b,c,d,e,f,g');
    expect((await send(again, id, 'emit:h')).meta.revisionNumber).toBe(8);
  });

  it('passivates and reloads from the store', async () => {
    const r = runtime({ maxActive: 2 });
    const ids = [newId('p'), newId('p'), newId('p')];
    for (const id of ids) await send(r, id, 'emit:a');
    expect(r.stats()).toMatchObject({ active: 2, passivated: 1 });
    const reply = await send(r, ids[0]!, 'emit:b');
    expect(textOf(reply.state)).toBe('a,b');
    expect(reply.meta.revisionNumber).toBe(2);
  });
});

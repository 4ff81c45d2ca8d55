import { createHash, randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FencedError, InvalidArgumentError, JournalConflictError, shardOf } from '@chiefofstate/core';
import { migrateToLatest } from '@chiefofstate/postgres';
import { openTestDatabase, testStoreKinds, type TestDatabase } from '@chiefofstate/postgres/testing';
import { createJournal, type IdempotencyRecord, type Journal } from './journal.js';
import { startKeyExpiry } from './key-expiry.js';
import { journalMigrations } from './schema.js';

const NUM_SHARDS = 8;
const DAY_MS = 24 * 60 * 60 * 1000;
const bytes = (text: string) => new TextEncoder().encode(text);
const digest = (text: string) => new Uint8Array(createHash('sha256').update(text).digest());
let counter = 0;
/** shards a test raised the fence of: other tests' appends (epoch 0) must not land there */
const fencedShards = new Set<number>();
function newId(prefix = 'k'): string {
  for (let attempt = 0; attempt < 1000; attempt++) {
    const id = `${prefix}-${++counter}-${randomBytes(3).toString('hex')}`;
    if (!fencedShards.has(shardOf(id, NUM_SHARDS))) return id;
  }
  throw new Error('no entity id outside the fenced shards');
}

function reply(key: string, text = `reply of ${key}`): IdempotencyRecord {
  return { key, digest: digest(`body of ${key}`), outcome: bytes(text) };
}

describe.each(await testStoreKinds())('journal idempotency keys on %s', (kind) => {
  let database: TestDatabase;
  let journal: Journal;

  beforeAll(async () => {
    database = await openTestDatabase(kind);
    await migrateToLatest({ database, migrations: journalMigrations });
    journal = createJournal({ database, numShards: NUM_SHARDS, fencing: true });
  });
  afterAll(async () => {
    await journal?.close();
    await database?.dispose();
  });

  /** transaction ids (xmin) of an entity's event rows and key rows */
  async function transactions(entityId: string): Promise<{ events: string[]; keys: string[] }> {
    const events = await sql<{ xid: string }>`SELECT xmin::text AS xid FROM cos_journal WHERE entity_id = ${entityId} ORDER BY revision`.execute(
      database.kysely,
    );
    const keys = await sql<{ xid: string }>`SELECT xmin::text AS xid FROM cos_idempotency_keys WHERE entity_id = ${entityId} ORDER BY key`.execute(
      database.kysely,
    );
    return { events: events.rows.map((r) => r.xid), keys: keys.rows.map((r) => r.xid) };
  }

  it('records the keys of an append in the transaction of its events, with digest and outcome', async () => {
    const id = newId();
    const failure: IdempotencyRecord = { key: 'k-2', digest: digest('b2'), errorKind: 'COS_HANDLER_FAILED', outcome: bytes('status') };
    await journal.append({ entityId: id, expectedRevision: 0n, events: [bytes('e1')], keys: [reply('k-1'), failure] });
    const found = await journal.findKeys(id, ['k-1', 'k-2', 'k-absent']);
    expect(found.map((k) => k.key).sort()).toEqual(['k-1', 'k-2']);
    const first = found.find((k) => k.key === 'k-1')!;
    expect(Buffer.from(first.outcome).toString()).toBe('reply of k-1');
    expect(first.errorKind).toBeUndefined();
    expect(Buffer.from(first.digest).equals(Buffer.from(digest('body of k-1')))).toBe(true);
    const second = found.find((k) => k.key === 'k-2')!;
    expect(second.errorKind).toBe('COS_HANDLER_FAILED');
    expect(Buffer.from(second.outcome).toString()).toBe('status');
    const { events, keys } = await transactions(id);
    expect(new Set([...events, ...keys]).size).toBe(1);
    expect(await journal.readKeys(id, 10)).toHaveLength(2);
    expect(await journal.readKeys(id, 1)).toHaveLength(1);
  });

  it('reads the newest event and the keys in one statement, as readLatest and readKeys do apart', async () => {
    const id = newId();
    expect(await journal.readLatestWithKeys(id, 10)).toEqual({ latest: undefined, keys: [] });
    await journal.append({ entityId: id, expectedRevision: 0n, events: [], keys: [reply('before-any-event')] });
    const keysOnly = await journal.readLatestWithKeys(id, 10);
    expect(keysOnly.latest).toBeUndefined();
    expect(keysOnly.keys).toEqual(await journal.readKeys(id, 10));
    await journal.append({ entityId: id, expectedRevision: 0n, events: [bytes('e1'), bytes('e2')], keys: [reply('k-1'), reply('k-2')] });
    const both = await journal.readLatestWithKeys(id, 10);
    expect(both.latest).toEqual(await journal.readLatest(id));
    expect(both.latest?.revision).toBe(2n);
    expect(both.keys.map((k) => k.key).sort()).toEqual(['before-any-event', 'k-1', 'k-2']);
    expect([...both.keys].sort((a, b) => a.key.localeCompare(b.key))).toEqual([...(await journal.readKeys(id, 10))].sort((a, b) => a.key.localeCompare(b.key)));
    expect(both.keys[0]!.recordedAt).toBeInstanceOf(Date);
    // the limit applies to the keys only
    const limited = await journal.readLatestWithKeys(id, 2);
    expect(limited.keys).toHaveLength(2);
    expect(limited.latest?.revision).toBe(2n);
    // another entity's rows are not read
    expect((await journal.readLatestWithKeys(newId(), 10)).keys).toEqual([]);
  });

  it('records keys without events when the expected revision is the latest, and refuses them otherwise', async () => {
    const id = newId();
    await journal.append({ entityId: id, expectedRevision: 0n, events: [], keys: [reply('noop-at-0')] });
    await journal.append({ entityId: id, expectedRevision: 0n, events: [bytes('e1')] });
    await journal.append({ entityId: id, expectedRevision: 1n, events: [], keys: [reply('noop-at-1')] });
    await expect(journal.append({ entityId: id, expectedRevision: 0n, events: [], keys: [reply('stale')] })).rejects.toBeInstanceOf(
      JournalConflictError,
    );
    await expect(journal.append({ entityId: id, expectedRevision: 2n, events: [], keys: [reply('ahead')] })).rejects.toBeInstanceOf(
      JournalConflictError,
    );
    const found = await journal.findKeys(id, ['noop-at-0', 'noop-at-1', 'stale', 'ahead']);
    expect(found.map((k) => k.key).sort()).toEqual(['noop-at-0', 'noop-at-1']);
    expect((await journal.readLatest(id))!.revision).toBe(1n);
  });

  it('writes the keys of the accepted requests of a group commit only', async () => {
    const stale = newId('stale');
    const fresh = newId('fresh');
    const keyOnly = newId('keyonly');
    await journal.append({ entityId: stale, expectedRevision: 0n, events: [bytes('e1')] });
    // one turn: one batch; the stale request fails the first attempt on the unique constraint
    const results = await Promise.allSettled([
      journal.append({ entityId: stale, expectedRevision: 0n, events: [bytes('again')], keys: [reply('lost')] }),
      journal.append({ entityId: fresh, expectedRevision: 0n, events: [bytes('e1'), bytes('e2')], keys: [reply('won')] }),
      journal.append({ entityId: keyOnly, expectedRevision: 0n, events: [], keys: [reply('only')] }),
      journal.append({ entityId: keyOnly, expectedRevision: 0n, events: [bytes('after')], keys: [reply('then')] }),
    ]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'fulfilled', 'fulfilled', 'fulfilled']);
    expect((results[0] as PromiseRejectedResult).reason).toBeInstanceOf(JournalConflictError);
    expect(await journal.findKeys(stale, ['lost'])).toEqual([]);
    expect((await journal.findKeys(fresh, ['won'])).map((k) => k.key)).toEqual(['won']);
    expect((await journal.findKeys(keyOnly, ['only', 'then'])).map((k) => k.key).sort()).toEqual(['only', 'then']);
  });

  it('overwrites a key recorded again (an expired one, or one whose first write was not known to have landed)', async () => {
    const id = newId();
    await journal.append({ entityId: id, expectedRevision: 0n, events: [bytes('e1')], keys: [reply('k', 'first')] });
    await journal.append({ entityId: id, expectedRevision: 1n, events: [bytes('e2')], keys: [reply('k', 'second')] });
    const [found] = await journal.findKeys(id, ['k']);
    expect(Buffer.from(found!.outcome).toString()).toBe('second');
  });

  it('keeps keys that need quoting in array literals', async () => {
    const id = newId();
    const odd = ['quote"d', 'back\\slash', '{braces},comma', 'NULL', ' spaced '];
    await journal.append({ entityId: id, expectedRevision: 0n, events: [bytes('e1')], keys: odd.map((k) => reply(k)) });
    expect((await journal.findKeys(id, odd)).map((k) => k.key).sort()).toEqual([...odd].sort());
  });

  it('refuses a fenced append of keys only, writing nothing', async () => {
    const id = newId();
    fencedShards.add(shardOf(id, NUM_SHARDS));
    await journal.fenceShard(shardOf(id, NUM_SHARDS), 5n);
    await expect(journal.append({ entityId: id, expectedRevision: 0n, events: [], keys: [reply('x')], fence: 4n })).rejects.toBeInstanceOf(
      FencedError,
    );
    expect(await journal.findKeys(id, ['x'])).toEqual([]);
    await journal.append({ entityId: id, expectedRevision: 0n, events: [], keys: [reply('x')], fence: 5n });
    expect(await journal.findKeys(id, ['x'])).toHaveLength(1);
  });

  it('refuses an append with neither events nor keys, and a digest of the wrong size', async () => {
    await expect(journal.append({ entityId: newId(), expectedRevision: 0n, events: [] })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(
      journal.append({ entityId: newId(), expectedRevision: 0n, events: [], keys: [{ key: 'k', digest: new Uint8Array(3), outcome: bytes('') }] }),
    ).rejects.toBeInstanceOf(InvalidArgumentError);
  });

  it('ignores keys older than the retention window and removes them in small batches in the background', async () => {
    const id = newId('expiring');
    const keys = ['a', 'b', 'c', 'd', 'e'];
    await journal.append({ entityId: id, expectedRevision: 0n, events: [bytes('e1')], keys: keys.map((k) => reply(k)) });
    await journal.append({ entityId: id, expectedRevision: 1n, events: [bytes('e2')], keys: [reply('young')] });
    await sql`UPDATE cos_idempotency_keys SET recorded_at = now() - interval '25 hours' WHERE entity_id = ${id} AND key <> 'young'`.execute(
      database.kysely,
    );
    expect((await journal.findKeys(id, [...keys, 'young'])).map((k) => k.key)).toEqual(['young']);
    expect((await journal.readKeys(id, 10)).map((k) => k.key)).toEqual(['young']);

    const removed: number[] = [];
    const expiry = startKeyExpiry({ database, retentionMs: DAY_MS, batchSize: 2, onExpired: (n) => removed.push(n), intervalMs: 3_600_000 });
    try {
      // other tests' keys are young: only these five are old enough
      expect(await expiry.runOnce()).toBe(5);
      expect(removed).toEqual([2, 2, 1]);
      expect(await expiry.runOnce()).toBe(0);
    } finally {
      await expiry.close();
    }
    const { rows } = await sql<{ key: string }>`SELECT key FROM cos_idempotency_keys WHERE entity_id = ${id}`.execute(database.kysely);
    expect(rows.map((r) => r.key)).toEqual(['young']);
  });
});

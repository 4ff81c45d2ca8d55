import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidArgumentError, JournalConflictError, ShuttingDownError, StoreError, shardOf } from '@chiefofstate/core';
import { migrateToLatest } from '@chiefofstate/postgres';
import { openTestDatabase, testStoreKinds, type TestDatabase } from '@chiefofstate/postgres/testing';
import { createJournal, type AppendResult, type Journal } from './journal.js';
import { JOURNAL_NOTIFY_CHANNEL, journalMigrations } from './schema.js';

const NUM_SHARDS = 8;

const payload = (text: string) => new TextEncoder().encode(text);
const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
let counter = 0;
const newId = (prefix = 'e') => `${prefix}-${++counter}-${randomBytes(3).toString('hex')}`;

/** Transaction ids (xmin) of the entities' rows: one per transaction that wrote them. */
async function transactionsOf(database: TestDatabase, entityIds: readonly string[]): Promise<Set<string>> {
  const { rows } = await sql<{ xid: string }>`
    SELECT xmin::text AS xid FROM cos_journal WHERE entity_id = ANY(${entityIds as string[]})`.execute(database.kysely);
  return new Set(rows.map((r) => r.xid));
}

async function countRows(database: TestDatabase, entityId: string): Promise<number> {
  const { rows } = await sql<{ n: bigint }>`SELECT count(*) AS n FROM cos_journal WHERE entity_id = ${entityId}`.execute(
    database.kysely,
  );
  return Number(rows[0]!.n);
}

describe.each(await testStoreKinds())('journal on %s', (kind) => {
  let database: TestDatabase;
  let journal: Journal;

  beforeAll(async () => {
    database = await openTestDatabase(kind);
    await migrateToLatest({ database, migrations: journalMigrations });
    journal = createJournal({ database, numShards: NUM_SHARDS });
  });
  afterAll(async () => {
    await journal?.close();
    await database?.dispose();
  });

  it('appends an event and reads it back', async () => {
    const id = newId();
    const result = await journal.append({ entityId: id, expectedRevision: 0n, events: [payload('first')] });
    expect(result.entityId).toBe(id);
    expect(result.firstRevision).toBe(1n);
    expect(result.lastRevision).toBe(1n);
    expect(result.positions).toHaveLength(1);
    expect(typeof result.positions[0]).toBe('bigint');
    expect(result.writtenAt).toBeInstanceOf(Date);

    const latest = await journal.readLatest(id);
    expect(latest).toMatchObject({
      position: result.positions[0],
      entityId: id,
      revision: 1n,
      shard: shardOf(id, NUM_SHARDS),
    });
    expect(latest!.writtenAt.getTime()).toBe(result.writtenAt.getTime());
    expect(latest!.payload).toBeInstanceOf(Uint8Array);
    expect(decode(latest!.payload)).toBe('first');
    expect(await journal.readLatest(newId('never'))).toBeUndefined();
  });

  it('every read gives written_at as the driver parses the timestamptz: milliseconds, truncated', async () => {
    const id = newId();
    const result = await journal.append({ entityId: id, expectedRevision: 0n, events: [payload('a'), payload('b'), payload('c')] });
    // the first as written; then the last microsecond of a millisecond and one before the epoch
    await sql`UPDATE cos_journal SET written_at = CASE revision WHEN 2 THEN '2026-12-06 01:02:03.999999+00'::timestamptz
        ELSE '1969-12-31 23:59:59.5005+00'::timestamptz END WHERE entity_id = ${id} AND revision > 1`.execute(database.kysely);
    const { rows } = await sql<{ written_at: Date }>`SELECT written_at FROM cos_journal WHERE entity_id = ${id} ORDER BY revision`.execute(
      database.kysely,
    );
    const expected = rows.map((row) => row.written_at.getTime());
    expect(expected).toEqual([result.writtenAt.getTime(), Date.parse('2026-12-06T01:02:03.999Z'), Date.parse('1969-12-31T23:59:59.500Z')]);
    const shard = shardOf(id, NUM_SHARDS);
    const reads = {
      readEntity: await journal.readEntity(id, { fromRevision: 1n }),
      readShard: (await journal.readShard({ shard, afterPosition: result.positions[0]! - 1n, limit: 1000 })).filter((e) => e.entityId === id),
      readAll: (await journal.readAll({ afterPosition: result.positions[0]! - 1n, limit: 1000 })).filter((e) => e.entityId === id),
    };
    for (const events of Object.values(reads)) expect(events.map((e) => e.writtenAt.getTime())).toEqual(expected);
    expect((await journal.readLatest(id))!.writtenAt.getTime()).toBe(expected[2]);
    expect((await journal.readLatestWithKeys(id, 10)).latest!.writtenAt.getTime()).toBe(expected[2]);
  });

  it('keeps payload bytes exactly, including empty and binary payloads', async () => {
    const id = newId();
    const binary = new Uint8Array(256).map((_, i) => i);
    const big = randomBytes(300_000);
    await journal.append({ entityId: id, expectedRevision: 0n, events: [new Uint8Array(), binary, big] });
    const events = await journal.readEntity(id, { fromRevision: 1n });
    expect(events.map((e) => e.payload.byteLength)).toEqual([0, 256, 300_000]);
    expect(Buffer.from(events[1]!.payload).equals(Buffer.from(binary))).toBe(true);
    expect(Buffer.from(events[2]!.payload).equals(big)).toBe(true);
  });

  it('stores entity ids with characters that need quoting in array literals', async () => {
    const ids = ['quote"d', 'back\\slash\\', '{braces},comma', 'NULL', ' spaced ', 'ünï©ødé-用户-😀', "it's", 'tab\there'];
    const results = await Promise.all(
      ids.map((entityId) => journal.append({ entityId, expectedRevision: 0n, events: [payload(entityId)] })),
    );
    expect(results.map((r) => r.entityId)).toEqual(ids);
    for (const id of ids) {
      const latest = await journal.readLatest(id);
      expect(latest?.entityId).toBe(id);
      expect(decode(latest!.payload)).toBe(id);
      expect(latest?.shard).toBe(shardOf(id, NUM_SHARDS));
    }
  });

  it('appends several events of one entity atomically, with consecutive revisions and positions', async () => {
    const id = newId();
    await journal.append({ entityId: id, expectedRevision: 0n, events: [payload('a')] });
    const result = await journal.append({ entityId: id, expectedRevision: 1n, events: [payload('b'), payload('c'), payload('d')] });
    expect(result.firstRevision).toBe(2n);
    expect(result.lastRevision).toBe(4n);
    const [p] = result.positions;
    expect(result.positions).toEqual([p!, p! + 1n, p! + 2n]);
    const events = await journal.readEntity(id, { fromRevision: 1n });
    expect(events.map((e) => [e.revision, decode(e.payload)])).toEqual([
      [1n, 'a'],
      [2n, 'b'],
      [3n, 'c'],
      [4n, 'd'],
    ]);
    expect(events.slice(1).map((e) => e.position)).toEqual(result.positions);
    expect((await journal.readLatest(id))?.revision).toBe(4n);
  });

  it('refuses a stale expected revision with JournalConflictError and writes none of its events', async () => {
    const id = newId();
    await journal.append({ entityId: id, expectedRevision: 0n, events: [payload('a'), payload('b')] });
    const error = await journal
      .append({ entityId: id, expectedRevision: 1n, events: [payload('x'), payload('y'), payload('z')] })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(JournalConflictError);
    expect(error).toMatchObject({ entityId: id, expectedRevision: 1n, code: 'COS_JOURNAL_CONFLICT' });
    await expect(journal.append({ entityId: id, expectedRevision: 0n, events: [payload('x')] })).rejects.toBeInstanceOf(
      JournalConflictError,
    );
    expect(await countRows(database, id)).toBe(2);
    const ok = await journal.append({ entityId: id, expectedRevision: 2n, events: [payload('c')] });
    expect(ok.lastRevision).toBe(3n);
  });

  it('refuses an expected revision ahead of the entity', async () => {
    const id = newId();
    await expect(journal.append({ entityId: id, expectedRevision: 3n, events: [payload('a')] })).rejects.toBeInstanceOf(
      JournalConflictError,
    );
    await journal.append({ entityId: id, expectedRevision: 0n, events: [payload('a')] });
    await expect(journal.append({ entityId: id, expectedRevision: 2n, events: [payload('b')] })).rejects.toBeInstanceOf(
      JournalConflictError,
    );
    expect(await countRows(database, id)).toBe(1);
  });

  it('lets exactly one of two racing writers of the same revision win', async () => {
    const id = newId();
    const other = createJournal({ database, numShards: NUM_SHARDS });
    const results = await Promise.allSettled([
      journal.append({ entityId: id, expectedRevision: 0n, events: [payload('one')] }),
      other.append({ entityId: id, expectedRevision: 0n, events: [payload('two')] }),
    ]);
    await other.close();
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const rejected = results.filter((r) => r.status === 'rejected');
    expect(rejected).toHaveLength(1);
    expect((rejected[0] as PromiseRejectedResult).reason).toBeInstanceOf(JournalConflictError);
    expect(await countRows(database, id)).toBe(1);
  });

  it('writes appends arriving together in one transaction, each caller getting its own result', async () => {
    const ids = Array.from({ length: 40 }, () => newId('group'));
    const results = await Promise.all(
      ids.map((entityId, i) =>
        journal.append({ entityId, expectedRevision: 0n, events: Array.from({ length: 1 + (i % 2) }, (_, k) => payload(`${i}:${k}`)) }),
      ),
    );
    expect(await transactionsOf(database, ids)).toHaveProperty('size', 1);
    const positions = results.flatMap((r) => r.positions);
    expect(new Set(positions).size).toBe(60);
    for (const [i, result] of results.entries()) {
      const events = await journal.readEntity(ids[i]!, { fromRevision: 1n });
      expect(events.map((e) => e.position)).toEqual(result.positions);
      expect(events.map((e) => decode(e.payload))).toEqual(events.map((_, k) => `${i}:${k}`));
      expect(result.lastRevision).toBe(BigInt(events.length));
    }
  });

  it('splits a group into transactions of at most batchThreshold events', async () => {
    const small = createJournal({ database, numShards: NUM_SHARDS, batchThreshold: 10 });
    const ids = Array.from({ length: 25 }, () => newId('split'));
    // one request of 12 events exceeds the threshold: it goes alone, whole
    const big = newId('split-big');
    await Promise.all([
      ...ids.map((entityId) => small.append({ entityId, expectedRevision: 0n, events: [payload('x')] })),
      small.append({ entityId: big, expectedRevision: 0n, events: Array.from({ length: 12 }, () => payload('y')) }),
    ]);
    await small.close();
    const { rows } = await sql<{ xid: string; n: bigint }>`
      SELECT xmin::text AS xid, count(*) AS n FROM cos_journal
       WHERE entity_id = ANY(${[...ids, big]}) GROUP BY 1`.execute(database.kysely);
    const sizes = rows.map((r) => Number(r.n)).sort((a, b) => a - b);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(37);
    expect(sizes).toContain(12);
    expect(sizes.filter((s) => s !== 12).every((s) => s <= 10)).toBe(true);
    expect(rows.length).toBe(4); // 10 + 10 + 5 + the 12
  });

  it('keeps a batch under 8 MiB of payload', async () => {
    const ids = Array.from({ length: 5 }, () => newId('bytes'));
    const big = randomBytes(3 * 1024 * 1024);
    await Promise.all(ids.map((entityId) => journal.append({ entityId, expectedRevision: 0n, events: [big] })));
    // 3 MiB each: two per transaction at most
    const { rows } = await sql<{ n: bigint }>`
      SELECT count(*) AS n FROM cos_journal WHERE entity_id = ANY(${ids}) GROUP BY xmin::text`.execute(database.kysely);
    expect(rows.map((r) => Number(r.n)).sort()).toEqual([1, 2, 2]);
    const [event] = await journal.readEntity(ids[4]!, { fromRevision: 1n });
    expect(Buffer.from(event!.payload).equals(big)).toBe(true);
  });

  it('fails only the stale member of a group; the others commit in the same transaction', async () => {
    const stale = newId('stale');
    await journal.append({ entityId: stale, expectedRevision: 0n, events: [payload('a')] });
    const good = Array.from({ length: 5 }, () => newId('good'));
    const outcomes = await Promise.allSettled([
      journal.append({ entityId: good[0]!, expectedRevision: 0n, events: [payload('g0')] }),
      journal.append({ entityId: good[1]!, expectedRevision: 0n, events: [payload('g1')] }),
      journal.append({ entityId: stale, expectedRevision: 0n, events: [payload('s1'), payload('s2')] }),
      journal.append({ entityId: good[2]!, expectedRevision: 0n, events: [payload('g2')] }),
      journal.append({ entityId: good[3]!, expectedRevision: 0n, events: [payload('g3')] }),
      journal.append({ entityId: good[4]!, expectedRevision: 0n, events: [payload('g4')] }),
    ]);
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled', 'fulfilled']);
    expect((outcomes[2] as PromiseRejectedResult).reason).toBeInstanceOf(JournalConflictError);
    expect(await countRows(database, stale)).toBe(1);
    expect(await transactionsOf(database, good)).toHaveProperty('size', 1);
    // each caller's positions are its stored events' positions, increasing in request order
    const results = outcomes.flatMap((o) => (o.status === 'fulfilled' ? [o.value as AppendResult] : []));
    for (const result of results) {
      const [event] = await journal.readEntity(result.entityId, { fromRevision: 1n });
      expect(event?.position).toBe(result.positions[0]);
    }
    const positions = results.flatMap((r) => r.positions);
    expect(positions).toEqual([...positions].sort((a, b) => (a < b ? -1 : 1)));
  });

  it('fails only the member with a value PostgreSQL refuses (NUL in the entity id)', async () => {
    const good = Array.from({ length: 4 }, () => newId('good'));
    const outcomes = await Promise.allSettled([
      journal.append({ entityId: good[0]!, expectedRevision: 0n, events: [payload('g0')] }),
      journal.append({ entityId: good[1]!, expectedRevision: 0n, events: [payload('g1')] }),
      journal.append({ entityId: 'bad\u0000id', expectedRevision: 0n, events: [payload('bad')] }),
      journal.append({ entityId: good[2]!, expectedRevision: 0n, events: [payload('g2')] }),
      journal.append({ entityId: good[3]!, expectedRevision: 0n, events: [payload('g3')] }),
    ]);
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    expect((outcomes[2] as PromiseRejectedResult).reason).toBeInstanceOf(InvalidArgumentError);
    for (const id of good) expect(await countRows(database, id)).toBe(1);
  });

  it('fails only the member whose row the database rejects (a trigger raising for one entity)', async () => {
    await sql
      .raw(
        `CREATE FUNCTION test_poison() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN IF NEW.entity_id = 'poison' THEN RAISE EXCEPTION 'poisoned row'; END IF; RETURN NEW; END $$`,
      )
      .execute(database.kysely);
    await sql
      .raw('CREATE TRIGGER test_poison BEFORE INSERT ON cos_journal FOR EACH ROW EXECUTE FUNCTION test_poison()')
      .execute(database.kysely);
    try {
      const good = Array.from({ length: 3 }, () => newId('good'));
      const outcomes = await Promise.allSettled([
        journal.append({ entityId: good[0]!, expectedRevision: 0n, events: [payload('g0')] }),
        journal.append({ entityId: 'poison', expectedRevision: 0n, events: [payload('p')] }),
        journal.append({ entityId: good[1]!, expectedRevision: 0n, events: [payload('g1'), payload('g1b')] }),
        journal.append({ entityId: good[2]!, expectedRevision: 0n, events: [payload('g2')] }),
      ]);
      expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
      const reason = (outcomes[1] as PromiseRejectedResult).reason as Error;
      expect(reason).toBeInstanceOf(StoreError);
      expect(reason.message).toContain('poisoned row');
      expect(await countRows(database, good[1]!)).toBe(2);
      expect(await countRows(database, 'poison')).toBe(0);
    } finally {
      await sql.raw('DROP TRIGGER test_poison ON cos_journal').execute(database.kysely);
      await sql.raw('DROP FUNCTION test_poison()').execute(database.kysely);
    }
  });

  it('judges two appends of one entity in one batch in order', async () => {
    // both valid: the second expects the first's last revision
    const a = newId('twice');
    const [first, second] = await Promise.all([
      journal.append({ entityId: a, expectedRevision: 0n, events: [payload('1'), payload('2')] }),
      journal.append({ entityId: a, expectedRevision: 2n, events: [payload('3')] }),
    ]);
    expect([first.lastRevision, second.lastRevision]).toEqual([2n, 3n]);
    expect(second.positions[0]).toBe(first.positions[1]! + 1n);
    expect(await transactionsOf(database, [a])).toHaveProperty('size', 1);

    // the first is stale, so the second, expecting the first's result, is refused too;
    // the third expects the real latest revision and wins
    const [r1, r2, r3] = await Promise.allSettled([
      journal.append({ entityId: a, expectedRevision: 1n, events: [payload('x')] }),
      journal.append({ entityId: a, expectedRevision: 2n, events: [payload('y')] }),
      journal.append({ entityId: a, expectedRevision: 3n, events: [payload('4')] }),
    ]);
    expect([r1.status, r2.status, r3.status]).toEqual(['rejected', 'rejected', 'fulfilled']);
    // the first wins, so a second one expecting the same revision loses
    const [w1, w2] = await Promise.allSettled([
      journal.append({ entityId: a, expectedRevision: 4n, events: [payload('5')] }),
      journal.append({ entityId: a, expectedRevision: 4n, events: [payload('lost')] }),
    ]);
    expect([w1.status, w2.status]).toEqual(['fulfilled', 'rejected']);
    const events = await journal.readEntity(a, { fromRevision: 1n });
    expect(events.map((e) => decode(e.payload))).toEqual(['1', '2', '3', '4', '5']);
  });

  it('reads an entity from a revision, with a limit', async () => {
    const id = newId();
    await journal.append({ entityId: id, expectedRevision: 0n, events: ['a', 'b', 'c', 'd', 'e'].map(payload) });
    const from3 = await journal.readEntity(id, { fromRevision: 3n });
    expect(from3.map((e) => e.revision)).toEqual([3n, 4n, 5n]);
    const limited = await journal.readEntity(id, { fromRevision: 2n, limit: 2 });
    expect(limited.map((e) => e.revision)).toEqual([2n, 3n]);
    expect(await journal.readEntity(id, { fromRevision: 6n })).toEqual([]);
    expect(await journal.readEntity(newId('never'), { fromRevision: 1n })).toEqual([]);
  });

  it('reads a shard after a position, in position order, only that shard', async () => {
    const start = await journal.latestPosition();
    const ids = Array.from({ length: 30 }, () => newId('shard'));
    for (const [i, entityId] of ids.entries()) {
      await journal.append({ entityId, expectedRevision: 0n, events: [payload(`p${i}`), payload(`q${i}`)] });
    }
    for (let shard = 0; shard < NUM_SHARDS; shard++) {
      const expected = ids.filter((id) => shardOf(id, NUM_SHARDS) === shard);
      const all = await journal.readShard({ shard, afterPosition: start, limit: 1000 });
      expect(all.every((e) => e.shard === shard)).toBe(true);
      expect(all.map((e) => e.entityId)).toEqual(expected.flatMap((id) => [id, id]));
      expect(all.map((e) => e.position)).toEqual([...all.map((e) => e.position)].sort((a, b) => (a < b ? -1 : 1)));
      // paging with afterPosition + limit yields the same sequence
      const paged = [];
      let after = start;
      for (;;) {
        const page = await journal.readShard({ shard, afterPosition: after, limit: 3 });
        if (page.length === 0) break;
        expect(page.length).toBeLessThanOrEqual(3);
        paged.push(...page);
        after = page.at(-1)!.position;
      }
      expect(paged.map((e) => e.position)).toEqual(all.map((e) => e.position));
    }
  });

  it('reads every shard after a position, in position order, in pages (subscriptions)', async () => {
    const start = await journal.latestPosition();
    const ids = Array.from({ length: 12 }, () => newId('all'));
    const written: bigint[] = [];
    for (const entityId of ids) {
      const result = await journal.append({ entityId, expectedRevision: 0n, events: [payload('x'), payload('y')] });
      written.push(...result.positions);
    }
    // other suites may write to this database meanwhile: look at this test's entities only
    const mine = <E extends { entityId: string }>(events: readonly E[]) => events.filter((e) => ids.includes(e.entityId));
    const all = mine(await journal.readAll({ afterPosition: start, limit: 10_000 }));
    expect(all.map((e) => e.position)).toEqual(written);
    const paged = [];
    let after = start;
    for (let pages = 0; pages < 10_000; pages++) {
      const page = await journal.readAll({ afterPosition: after, limit: 5 });
      if (page.length === 0) break;
      expect(page.length).toBeLessThanOrEqual(5);
      paged.push(...page);
      after = page.at(-1)!.position;
    }
    expect(mine(paged).map((e) => e.position)).toEqual(written);
  });

  it('reads an entity with its logically deleted events when asked (subscriptions)', async () => {
    const id = newId();
    const { positions } = await journal.append({ entityId: id, expectedRevision: 0n, events: ['a', 'b', 'c'].map(payload) });
    await journal.deleteEventsBefore(id, 3n);
    expect((await journal.readEntity(id, { fromRevision: 1n })).map((e) => e.revision)).toEqual([3n]);
    expect((await journal.readEntity(id, { fromRevision: 1n, includeDeleted: true })).map((e) => e.revision)).toEqual([1n, 2n, 3n]);
    const all = await journal.readAll({ afterPosition: positions[0]! - 1n, limit: 1000 });
    expect(all.filter((e) => e.entityId === id).map((e) => e.revision)).toEqual([1n, 2n, 3n]);
  });

  it('reports the latest position, overall and per shard', async () => {
    const id = newId();
    const result = await journal.append({ entityId: id, expectedRevision: 0n, events: [payload('a'), payload('b')] });
    expect(await journal.latestPosition()).toBe(result.positions[1]);
    expect(await journal.latestPosition(shardOf(id, NUM_SHARDS))).toBe(result.positions[1]);
    const other = (shardOf(id, NUM_SHARDS) + 1) % NUM_SHARDS;
    expect(await journal.latestPosition(other)).toBeLessThan(result.positions[0]!);
  });

  it('marks events before a revision deleted: hidden from readEntity, still read by read sides', async () => {
    const id = newId();
    const result = await journal.append({ entityId: id, expectedRevision: 0n, events: ['a', 'b', 'c', 'd'].map(payload) });
    expect(await journal.deleteEventsBefore(id, 3n)).toBe(2);
    expect(await journal.deleteEventsBefore(id, 3n)).toBe(0);
    expect((await journal.readEntity(id, { fromRevision: 1n })).map((e) => e.revision)).toEqual([3n, 4n]);
    expect((await journal.readLatest(id))?.revision).toBe(4n);
    const shard = await journal.readShard({ shard: shardOf(id, NUM_SHARDS), afterPosition: result.positions[0]! - 1n, limit: 100 });
    expect(shard.filter((e) => e.entityId === id).map((e) => e.revision)).toEqual([1n, 2n, 3n, 4n]);
    // appending continues from the latest revision
    await journal.append({ entityId: id, expectedRevision: 4n, events: [payload('e')] });
    expect(await journal.deleteEventsBefore(id, 100n)).toBe(3);
    expect((await journal.readLatest(id))?.revision).toBe(5n);
  });

  // NOTIFY channels are per database, and other suites write to the same database at the same
  // time: these tests write to shards no one else uses (>= OWN_SHARDS_FROM of NOTIFY_SHARDS) and
  // look only at the notifications naming such shards.
  const NOTIFY_SHARDS = 4096;
  const OWN_SHARDS_FROM = 1024;
  const ownId = (prefix: string): string => {
    for (let i = 0; i < 1000; i++) {
      const id = newId(prefix);
      if (shardOf(id, NOTIFY_SHARDS) >= OWN_SHARDS_FROM) return id;
    }
    throw new Error('no id in an own shard after 1000 tries');
  };
  const listenToOwnShards = (received: string[]) =>
    database.listen(JOURNAL_NOTIFY_CHANNEL, (p) => {
      if (p.split(',').every((shard) => Number(shard) >= OWN_SHARDS_FROM)) received.push(p);
    });

  it('notifies the shards each append transaction touched', async () => {
    const notifying = createJournal({ database, numShards: NOTIFY_SHARDS });
    const received: string[] = [];
    const unlisten = await listenToOwnShards(received);
    try {
      const ids = Array.from({ length: 12 }, () => ownId('notify'));
      await Promise.all(ids.map((entityId) => notifying.append({ entityId, expectedRevision: 0n, events: [payload('n')] })));
      const shards = [...new Set(ids.map((id) => shardOf(id, NOTIFY_SHARDS)))].sort();
      await expect
        .poll(() => received.flatMap((p) => p.split(',')).map(Number), { timeout: 3000 })
        .toEqual(expect.arrayContaining(shards));
      expect(received).toHaveLength(1); // one transaction, one notification
    } finally {
      await unlisten();
      await notifying.close();
    }
  });

  it('notifies only the shards actually written when a member of the batch is refused', async () => {
    const notifying = createJournal({ database, numShards: NOTIFY_SHARDS });
    // two entities in different shards; the one in `refusedShard` expects a wrong revision
    const ids = Array.from({ length: 50 }, () => ownId('nshard'));
    const written = ids[0]!;
    const refused = ids.find((id) => shardOf(id, NOTIFY_SHARDS) !== shardOf(written, NOTIFY_SHARDS))!;
    const received: string[] = [];
    const unlisten = await listenToOwnShards(received);
    try {
      const outcomes = await Promise.allSettled([
        notifying.append({ entityId: written, expectedRevision: 0n, events: [payload('w')] }),
        notifying.append({ entityId: refused, expectedRevision: 7n, events: [payload('r')] }),
      ]);
      expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'rejected']);
      await expect.poll(() => received, { timeout: 3000 }).toEqual([String(shardOf(written, NOTIFY_SHARDS))]);
      // a batch where everyone is refused notifies nothing
      await expect(notifying.append({ entityId: refused, expectedRevision: 7n, events: [payload('r')] })).rejects.toBeInstanceOf(
        JournalConflictError,
      );
      const after = ownId('after');
      await notifying.append({ entityId: after, expectedRevision: 0n, events: [payload('a')] });
      await expect.poll(() => received.length, { timeout: 3000 }).toBe(2);
      expect(received).toEqual([String(shardOf(written, NOTIFY_SHARDS)), String(shardOf(after, NOTIFY_SHARDS))]);
    } finally {
      await unlisten();
      await notifying.close();
    }
  });

  it('refuses invalid requests before queueing them', async () => {
    await expect(journal.append({ entityId: 'x', expectedRevision: 0n, events: [] })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(journal.append({ entityId: '', expectedRevision: 0n, events: [payload('a')] })).rejects.toBeInstanceOf(
      InvalidArgumentError,
    );
    await expect(journal.append({ entityId: 'x', expectedRevision: -1n, events: [payload('a')] })).rejects.toBeInstanceOf(
      InvalidArgumentError,
    );
    expect(() => createJournal({ database, numShards: 0 })).toThrow(InvalidArgumentError);
  });

  it('close() writes what is queued, then refuses new appends', async () => {
    const closing = createJournal({ database, numShards: NUM_SHARDS, batchThreshold: 7 });
    const ids = Array.from({ length: 30 }, () => newId('close'));
    const outcomes: string[] = [];
    const pending = ids.map((entityId) =>
      closing.append({ entityId, expectedRevision: 0n, events: [payload('c')] }).then(
        () => outcomes.push('ok'),
        () => outcomes.push('failed'),
      ),
    );
    await closing.close();
    // every queued append had been written when close() resolved
    expect(outcomes).toEqual(ids.map(() => 'ok'));
    await Promise.all(pending);
    for (const id of ids) expect(await countRows(database, id)).toBe(1);
    await expect(closing.append({ entityId: newId(), expectedRevision: 0n, events: [payload('late')] })).rejects.toBeInstanceOf(
      ShuttingDownError,
    );
    await closing.close(); // idempotent
  });

  it('reports database failures as StoreError', async () => {
    const other = await openTestDatabase(kind);
    // no migrations in this schema: the table and the function are missing
    const broken = createJournal({ database: other, numShards: NUM_SHARDS });
    try {
      await expect(broken.append({ entityId: 'x', expectedRevision: 0n, events: [payload('a')] })).rejects.toBeInstanceOf(StoreError);
      await expect(broken.readLatest('x')).rejects.toBeInstanceOf(StoreError);
      await expect(broken.readShard({ shard: 0, afterPosition: 0n, limit: 1 })).rejects.toBeInstanceOf(StoreError);
    } finally {
      await broken.close();
      await other.dispose();
    }
  });
});

describe.each(await testStoreKinds())('a fresh journal on %s', (kind) => {
  it('has latest position 0n and runs its migrations once', async () => {
    const database = await openTestDatabase(kind);
    try {
      const first = await migrateToLatest({ database, migrations: journalMigrations });
      expect(first.results?.map((r) => r.status)).toEqual(['Success', 'Success', 'Success', 'Success']);
      expect((await migrateToLatest({ database, migrations: journalMigrations })).results).toEqual([]);
      const journal = createJournal({ database, numShards: 4 });
      expect(await journal.latestPosition()).toBe(0n);
      expect(await journal.latestPosition(2)).toBe(0n);
      expect(await journal.readShard({ shard: 0, afterPosition: 0n, limit: 10 })).toEqual([]);
      const result = await journal.append({ entityId: 'first', expectedRevision: 0n, events: [payload('a')] });
      expect(result.positions).toEqual([1n]);
      await journal.close();
    } finally {
      await database.dispose();
    }
  });
});

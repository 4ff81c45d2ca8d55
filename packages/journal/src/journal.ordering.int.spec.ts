import { setTimeout as sleep } from 'node:timers/promises';
import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { shardOf } from '@chiefofstate/core';
import { migrateToLatest } from '@chiefofstate/postgres';
import { openTestDatabase, testStoreKinds, uniqueSchemaName, type TestDatabase } from '@chiefofstate/postgres/testing';
import { createJournal, type Journal, type JournalEvent } from './journal.js';
import { journalMigrations } from './schema.js';

// The gap problem needs concurrent transactions, which only the real server has (PGlite runs
// one transaction at a time).
const hasServer = (await testStoreKinds()).includes('postgres');

const NUM_SHARDS = 4;
const payload = (text: string) => new TextEncoder().encode(text);

/** Entity ids that all land in `shard`. */
function idsInShard(shard: number, count: number, prefix: string): string[] {
  const ids: string[] = [];
  for (let i = 0; ids.length < count; i++) if (shardOf(`${prefix}-${i}`, NUM_SHARDS) === shard) ids.push(`${prefix}-${i}`);
  return ids;
}

/** One append through the journal's function, inside the caller's (open) transaction. */
async function appendInTransaction(trx: Kysely<object>, entityId: string, expected: bigint, text: string): Promise<void> {
  const bytes = payload(text);
  const { rows } = await sql<{ accepted: number[] | null }>`
    SELECT accepted FROM cos_journal_append(${[entityId]}, ${[expected]}, NULL, ${[shardOf(entityId, NUM_SHARDS)]},
                                      NULL, NULL, ${[0]}, ${[bytes.byteLength]}, ${bytes}, false,
                                      ${String(shardOf(entityId, NUM_SHARDS))})`.execute(trx);
  if (rows[0]?.accepted !== null) throw new Error(`append of ${entityId} refused`);
}

/**
 * A read side's loop over one shard: reads after the last position it saw, forever, until
 * stopped. Everything it reads goes to `seen`, in the order read.
 */
function startShardReader(journal: Journal, shard: number, afterPosition = 0n) {
  const seen: JournalEvent[] = [];
  let stopped = false;
  let cursor = afterPosition;
  const done = (async () => {
    while (!stopped) {
      const page = await journal.readShard({ shard, afterPosition: cursor, limit: 50 });
      seen.push(...page);
      if (page.length > 0) cursor = page.at(-1)!.position;
      else await sleep(1);
    }
  })();
  return {
    seen,
    /** reads until it has passed `position`, then stops */
    async stopAfter(position: bigint) {
      while (cursor < position) await sleep(2);
      stopped = true;
      await done;
    },
    async stop() {
      stopped = true;
      await done;
    },
  };
}

describe.runIf(hasServer)('shard reads under concurrent commits on the real PostgreSQL', () => {
  const schema = uniqueSchemaName();
  const databases: TestDatabase[] = [];
  const open = async () => {
    const database = await openTestDatabase('postgres', schema);
    databases.push(database);
    return database;
  };
  let main: TestDatabase;

  beforeAll(async () => {
    main = await open();
    await migrateToLatest({ database: main, migrations: journalMigrations });
  });
  afterAll(async () => {
    // the first handle drops the schema, so it closes last
    for (const d of databases.slice(1)) await d.close();
    await databases[0]?.dispose();
  });

  it('never skips an event when the transaction that started first tries to commit last', async () => {
    const shard = 1;
    const [slow, fast] = idsInShard(shard, 2, 'order');
    const other = createJournal({ database: await open(), numShards: NUM_SHARDS });
    const readerJournal = createJournal({ database: await open(), numShards: NUM_SHARDS });
    const reader = startShardReader(readerJournal, shard, await readerJournal.latestPosition());

    // Transaction A appends first and stays open (as if its COMMIT were slow)...
    let releaseA!: () => void;
    const gate = new Promise<void>((resolve) => (releaseA = resolve));
    let aAppended!: () => void;
    const appended = new Promise<void>((resolve) => (aAppended = resolve));
    const transactionA = main.kysely.transaction().execute(async (trx) => {
      await appendInTransaction(trx, slow!, 0n, 'A');
      aAppended();
      await gate;
    });
    await appended;

    // ...while B, started later from another "process", tries to commit before it.
    let bSettled = false;
    const appendB = other.append({ entityId: fast!, expectedRevision: 0n, events: [payload('B')] }).finally(() => {
      bSettled = true;
    });
    await sleep(300);
    // B cannot have committed: it waits for A's lock, so it cannot overtake A.
    expect(bSettled).toBe(false);
    expect(reader.seen).toEqual([]);

    releaseA();
    await transactionA;
    const b = await appendB;
    await reader.stopAfter(b.positions[0]!);
    await other.close();

    const all = await readerJournal.readShard({ shard, afterPosition: 0n, limit: 100 });
    expect(all.map((e) => e.entityId)).toEqual([slow, fast]);
    expect(reader.seen.map((e) => e.position)).toEqual(all.map((e) => e.position));
  });

  it('(control) a plain sequence without the lock does let a reader skip an event', async () => {
    // Shows that the reader above would notice a gap: the same interleaving, written with plain
    // INSERTs that take positions from the sequence without the journal's lock.
    const shard = 2;
    const [slow, fast] = idsInShard(shard, 2, 'nolock');
    const readerJournal = createJournal({ database: await open(), numShards: NUM_SHARDS });
    const reader = startShardReader(readerJournal, shard, await readerJournal.latestPosition());
    const insert = (db: Kysely<object>, entityId: string) =>
      sql`INSERT INTO cos_journal (entity_id, revision, shard, written_at, payload)
          VALUES (${entityId}, 1, ${shard}, now(), ${payload('x')}) RETURNING position`.execute(db);

    let releaseA!: () => void;
    const gate = new Promise<void>((resolve) => (releaseA = resolve));
    let aInserted!: () => void;
    const inserted = new Promise<void>((resolve) => (aInserted = resolve));
    const transactionA = main.kysely.transaction().execute(async (trx) => {
      await insert(trx, slow!); // takes position p
      aInserted();
      await gate;
    });
    await inserted;
    const b = await insert((await open()).kysely, fast!); // takes p + 1 and commits first
    const bPosition = (b.rows[0] as { position: bigint }).position;
    await expect.poll(() => reader.seen.length, { timeout: 2000 }).toBe(1);
    releaseA();
    await transactionA;
    await sleep(100);
    await reader.stop();

    const all = await readerJournal.readShard({ shard, afterPosition: 0n, limit: 100 });
    expect(all.map((e) => e.entityId)).toEqual([slow, fast]);
    // the reader saw only B: A committed later with a lower position, behind its cursor
    expect(reader.seen.map((e) => e.position)).toEqual([bPosition]);
  });

  it('gives every shard reader each committed event exactly once, in position order, under heavy concurrent appends', async () => {
    const journals = await Promise.all([1, 2, 3, 4].map(async () => createJournal({ database: await open(), numShards: NUM_SHARDS })));
    const readerJournal = createJournal({ database: await open(), numShards: NUM_SHARDS });
    const start = await readerJournal.latestPosition();
    const readers = Array.from({ length: NUM_SHARDS }, (_, shard) => startShardReader(readerJournal, shard, start));
    const committed: bigint[] = [];
    const until = Date.now() + 2500;

    // 4 journals (processes) x 16 writers, each on its own entity, 1 to 3 events per append
    const writers = journals.flatMap((journal, j) =>
      Array.from({ length: 16 }, async (_, w) => {
        const entityId = `heavy-${j}-${w}`;
        let revision = 0n;
        for (let n = 0; Date.now() < until; n++) {
          const events = Array.from({ length: 1 + (n % 3) }, (_, k) => payload(`${entityId}:${n}:${k}`));
          const result = await journal.append({ entityId, expectedRevision: revision, events });
          revision = result.lastRevision;
          committed.push(...result.positions);
        }
      }),
    );
    // plus a writer whose transactions hold the lock a little before committing (slow commits)
    const slowWriter = (async () => {
      let revision = 0n;
      while (Date.now() < until) {
        await main.kysely.transaction().execute(async (trx) => {
          await appendInTransaction(trx, 'heavy-slow', revision, 'slow');
          await sleep(Math.random() * 3);
        });
        revision++;
      }
    })();
    await Promise.all([...writers, slowWriter]);
    await Promise.all(journals.map((j) => j.close()));

    const end = await readerJournal.latestPosition();
    let total = 0;
    for (const [shard, reader] of readers.entries()) {
      await reader.stopAfter(await readerJournal.latestPosition(shard));
      const all: JournalEvent[] = [];
      for (let after = start; ; ) {
        const page = await readerJournal.readShard({ shard, afterPosition: after, limit: 5000 });
        if (page.length === 0) break;
        all.push(...page);
        after = page.at(-1)!.position;
      }
      expect(all.length).toBeGreaterThan(0);
      // exactly the committed events of the shard, each once, in position order
      expect(reader.seen.map((e) => e.position)).toEqual(all.map((e) => e.position));
      total += all.length;
    }
    const slowCount = await sql<{ n: bigint }>`SELECT count(*) AS n FROM cos_journal WHERE entity_id = 'heavy-slow'`.execute(
      main.kysely,
    );
    expect(total).toBe(committed.length + Number(slowCount.rows[0]!.n));
    expect(committed.every((p) => p > start && p <= end)).toBe(true);
    expect(committed.length).toBeGreaterThan(500);
  });
});

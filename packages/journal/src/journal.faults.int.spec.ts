import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CommitOutcomeUnknownError, JournalConflictError, StoreError } from '@chiefofstate/core';
import { createDatabase, migrateToLatest, type Database } from '@chiefofstate/postgres';
import { findPostgresBinDir, pollUntil, startOwnPostgres, timed, type OwnPostgres } from '@chiefofstate/testing';
import { createJournal, type Journal } from './journal.js';
import { JOURNAL_LOCK_CLASS, journalMigrations } from './schema.js';

/*
 * The journal on a PostgreSQL this file starts itself, through the faults it must answer
 * honestly: an append that certainly did not commit is a StoreError (safe to retry); one that
 * was sent and never answered is a CommitOutcomeUnknownError (read before retrying).
 */

const runnable = process.env['CI'] === 'true' || findPostgresBinDir() !== undefined;
const SCHEMA = 'journal_faults';

const event = (text: string) => new TextEncoder().encode(text);

describe.skipIf(!runnable)('journal on a PostgreSQL that fails', () => {
  let server: OwnPostgres;
  let database: Database;
  let journal: Journal;
  let entity = 0;
  const nextEntity = () => `e-${++entity}`;

  beforeAll(async () => {
    server = await startOwnPostgres({ database: 'journal' });
  }, 120_000);
  afterAll(async () => {
    await server?.dispose();
  });
  afterEach(async () => {
    server.resume();
    await journal?.close();
    await database?.close();
  });

  async function open(statementTimeoutMs = 1000): Promise<void> {
    database = await createDatabase({
      kind: 'postgres',
      host: server.host,
      port: server.port,
      user: server.user,
      password: '',
      database: server.database,
      schema: SCHEMA,
      applicationName: 'cos-journal-faults',
      connectTimeoutMs: 1000,
      statementTimeoutMs,
    });
    await migrateToLatest({ database, migrations: journalMigrations });
    journal = createJournal({ database, numShards: 4 });
  }

  /** Holds the journal's append lock from another session until the returned function is called. */
  async function holdAppendLock(): Promise<() => Promise<void>> {
    const client = new pg.Client({ host: server.host, port: server.port, user: server.user, database: server.database });
    client.on('error', () => {});
    await client.connect();
    const { rows } = await client.query<{ key: number }>(`SELECT hashtext('${SCHEMA}') AS key`);
    await client.query('SELECT pg_advisory_lock($1, $2)', [JOURNAL_LOCK_CLASS, rows[0]!.key]);
    return () => client.end();
  }

  it("answers the server's statement_timeout as a StoreError: nothing was written", async () => {
    await open(300);
    const release = await holdAppendLock();
    const entityId = nextEntity();
    const outcome = await timed(() => journal.append({ entityId, expectedRevision: 0n, events: [event('a')] }));
    await release();
    expect(outcome.error).toBeInstanceOf(StoreError);
    expect(outcome.ms).toBeLessThan(800);
    expect(await journal.readLatest(entityId)).toBeUndefined();
  }, 30_000);

  it('waits for a batch until the latest deadline of its members, then answers CommitOutcomeUnknownError', async () => {
    await open(10_000);
    const release = await holdAppendLock();
    const now = Date.now();
    // one batch: both are queued in the same turn
    const early = timed(() => journal.append({ entityId: nextEntity(), expectedRevision: 0n, events: [event('a')], deadline: now + 200 }));
    const late = timed(() => journal.append({ entityId: nextEntity(), expectedRevision: 0n, events: [event('b')], deadline: now + 900 }));
    const [a, b] = await Promise.all([early, late]);
    await release();
    for (const outcome of [a, b]) {
      expect(outcome.error).toBeInstanceOf(CommitOutcomeUnknownError);
      // the later deadline (900 ms), not the 10 s statement timeout
      expect(outcome.ms).toBeGreaterThanOrEqual(850);
      expect(outcome.ms).toBeLessThan(2500);
    }
  }, 30_000);

  it('answers an append in flight on a stalled server (SIGSTOP) as outcome unknown, then fails fast, then recovers', async () => {
    await open(1000);
    const entityId = nextEntity();
    await journal.append({ entityId, expectedRevision: 0n, events: [event('1')] });
    await server.stall();
    const inFlight = await timed(() => journal.append({ entityId, expectedRevision: 1n, events: [event('2')] }));
    expect(inFlight.error).toBeInstanceOf(CommitOutcomeUnknownError);
    expect(inFlight.ms).toBeLessThan(2500);
    await pollUntil(() => !database.available(), 5000, 'store counted down');
    const refused = await timed(() => journal.append({ entityId, expectedRevision: 1n, events: [event('2')] }));
    expect(refused.error).toBeInstanceOf(StoreError);
    expect(refused.ms).toBeLessThan(100);
    server.resume();
    // the unknown append may have committed after SIGCONT: read, then write on what is there
    await pollUntil(() => database.available(), 10_000, 'store back');
    const latest = await journal.readLatest(entityId);
    await journal.append({ entityId, expectedRevision: latest!.revision, events: [event('3')] });
  }, 60_000);

  it('answers appends while the server is stopped with StoreError at once', async () => {
    await open(1000);
    await journal.append({ entityId: nextEntity(), expectedRevision: 0n, events: [event('x')] });
    await server.stop();
    try {
      const outcomes = await Promise.all(
        Array.from({ length: 5 }, () => timed(() => journal.append({ entityId: nextEntity(), expectedRevision: 0n, events: [event('y')] }))),
      );
      for (const outcome of outcomes) {
        expect(outcome.error).toBeInstanceOf(StoreError);
        expect(outcome.ms).toBeLessThan(1500);
      }
    } finally {
      await server.start();
    }
    await pollUntil(() => database.available(), 10_000, 'store back');
    await journal.append({ entityId: nextEntity(), expectedRevision: 0n, events: [event('z')] });
  }, 60_000);

  it('keeps every acknowledged append exactly once, revisions without gaps, through a restart under load', async () => {
    await open(1000);
    const writers = 16;
    let running = true;
    const acknowledged = new Map<string, string[]>(); // entity -> payload per revision
    let unknown = 0;
    let failed = 0;
    const loops = Array.from({ length: writers }, async () => {
      const entityId = nextEntity();
      const acked: string[] = [];
      acknowledged.set(entityId, acked);
      let revision = 0n;
      for (let i = 0; running && i < 100_000; i++) {
        const payload = `${entityId}#${i}`;
        try {
          await journal.append({ entityId, expectedRevision: revision, events: [event(payload)] });
          revision++;
          acked[Number(revision) - 1] = payload;
        } catch (error) {
          if (error instanceof CommitOutcomeUnknownError || error instanceof JournalConflictError) {
            unknown++;
            // read before retrying: the append may be there
            for (let attempt = 0; attempt < 200; attempt++) {
              try {
                revision = (await journal.readLatest(entityId))?.revision ?? 0n;
                break;
              } catch {
                await new Promise((resolve) => setTimeout(resolve, 50));
              }
            }
          } else if (error instanceof StoreError) {
            failed++;
            await new Promise((resolve) => setTimeout(resolve, 20));
          } else {
            throw error;
          }
        }
      }
    });
    await pollUntil(() => [...acknowledged.values()].reduce((n, a) => n + a.length, 0) > 200, 10_000, 'load running');
    await server.restart();
    const before = [...acknowledged.values()].reduce((n, a) => n + a.length, 0);
    await pollUntil(() => [...acknowledged.values()].reduce((n, a) => n + a.length, 0) > before + 200, 10_000, 'appends again');
    running = false;
    await Promise.all(loops);
    expect(failed + unknown).toBeGreaterThan(0);

    const { rows } = await sql<{ entity_id: string; revision: bigint; payload: Uint8Array }>`
      SELECT entity_id, revision, payload FROM cos_journal ORDER BY entity_id, revision`.execute(database.kysely);
    const stored = new Map<string, string[]>();
    for (const row of rows) {
      const list = stored.get(row.entity_id) ?? [];
      expect(row.revision).toBe(BigInt(list.length + 1)); // no gap, no duplicate
      list.push(new TextDecoder().decode(row.payload));
      stored.set(row.entity_id, list);
    }
    for (const [entityId, acked] of acknowledged) {
      const list = stored.get(entityId) ?? [];
      acked.forEach((payload, index) => {
        if (payload !== undefined) expect(list[index]).toBe(payload);
      });
    }
  }, 60_000);
});

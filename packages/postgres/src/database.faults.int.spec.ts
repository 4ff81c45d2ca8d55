import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { StoreError } from '@chiefofstate/core';
import { findPostgresBinDir, pollUntil, startOwnPostgres, timed, type OwnPostgres } from '@chiefofstate/testing';
import { createDatabase, type Database, type DatabaseStatus, type PostgresConnectionOptions } from './database.js';
import { isOutcomeUnknown } from './sql-errors.js';
import { withStatementDeadline } from './statement-deadline.js';

/*
 * The faults every PostgreSQL deployment sees, on a server this file starts itself: a restart
 * under load, killed backends, a stalled server (SIGSTOP), a connection that turned read-only.
 * The process must survive each, calls must fail within their bounds, and service must return
 * by itself.
 */

// The binaries are required in CI; elsewhere the suite is skipped without them.
const runnable = process.env['CI'] === 'true' || findPostgresBinDir() !== undefined;

describe.skipIf(!runnable)('database on a PostgreSQL that fails', () => {
  let server: OwnPostgres;
  const opened: Database[] = [];
  const statuses: DatabaseStatus[] = [];
  // an 'error' event nobody listens to would surface here (and fail the run) rather than pass unseen
  const uncaught: unknown[] = [];
  const onUncaught = (error: unknown) => uncaught.push(error);

  beforeAll(async () => {
    server = await startOwnPostgres({ database: 'faults' });
    process.on('uncaughtException', onUncaught);
  }, 120_000);
  afterAll(async () => {
    process.off('uncaughtException', onUncaught);
    await server?.dispose();
  });
  afterEach(async () => {
    server.resume();
    for (const database of opened.splice(0)) await database.close().catch(() => {});
    statuses.length = 0;
    expect(uncaught).toEqual([]);
  });

  async function open(overrides: Partial<PostgresConnectionOptions> = {}): Promise<Database> {
    const database = await createDatabase({
      kind: 'postgres',
      host: server.host,
      port: server.port,
      user: server.user,
      password: '',
      database: server.database,
      schema: 'faults',
      applicationName: 'cos-faults-spec',
      poolMax: 4,
      connectTimeoutMs: 1000,
      statementTimeoutMs: 1000,
      onStatus: (status) => statuses.push(status),
      ...overrides,
    });
    opened.push(database);
    return database;
  }

  /** Callers issuing statements back to back until `stop()`; counts outcomes, keeps the slowest failure. */
  function load(database: Database, callers: number) {
    let running = true;
    const outcome = { ok: 0, failed: 0, slowestFailureMs: 0, unexpected: [] as unknown[] };
    const loops = Array.from({ length: callers }, async () => {
      for (let i = 0; running && i < 100_000; i++) {
        const call = await timed(() => sql`SELECT pg_sleep(0.01)`.execute(database.kysely));
        if (call.error === undefined) {
          outcome.ok++;
          continue;
        }
        outcome.failed++;
        outcome.slowestFailureMs = Math.max(outcome.slowestFailureMs, call.ms);
        if (!(call.error instanceof StoreError) && !isOutcomeUnknown(call.error)) outcome.unexpected.push(call.error);
        // a caller backing off as a client would, without a fixed schedule
        await new Promise((resolve) => setImmediate(resolve));
      }
    });
    return {
      outcome,
      async stop() {
        running = false;
        await Promise.all(loops);
        return outcome;
      },
    };
  }

  async function answers(database: Database): Promise<boolean> {
    try {
      await sql`SELECT 1`.execute(database.kysely);
      return true;
    } catch {
      return false;
    }
  }

  it('survives a restart (-m fast) under load, and serves again by itself', async () => {
    const database = await open();
    const traffic = load(database, 8);
    await pollUntil(() => traffic.outcome.ok > 50, 10_000, 'load running');
    await server.restart();
    const recoveredMs = await pollUntil(() => answers(database), 10_000, 'service back after the restart');
    const before = traffic.outcome.ok;
    await pollUntil(() => traffic.outcome.ok > before + 50, 10_000, 'load served again');
    const outcome = await traffic.stop();
    expect(outcome.failed).toBeGreaterThan(0);
    expect(outcome.unexpected).toEqual([]);
    // every failure within the statement bound (1 s + grace), none hanging
    expect(outcome.slowestFailureMs).toBeLessThan(2000);
    expect(recoveredMs).toBeLessThan(10_000);
    expect(database.poolStats()?.available).toBe(true);
  }, 60_000);

  it('survives pg_terminate_backend of its connections under load, five times', async () => {
    const database = await open();
    const traffic = load(database, 8);
    for (let round = 0; round < 5; round++) {
      const ok = traffic.outcome.ok;
      await pollUntil(() => traffic.outcome.ok > ok + 20, 10_000, 'load running');
      await server.terminateBackends({ applicationName: 'cos-faults-spec' });
    }
    const ok = traffic.outcome.ok;
    await pollUntil(() => traffic.outcome.ok > ok + 50, 10_000, 'load served again');
    const outcome = await traffic.stop();
    expect(outcome.unexpected).toEqual([]);
    expect(outcome.slowestFailureMs).toBeLessThan(2000);
  }, 60_000);

  it('bounds a statement on a stalled server, fails fast while it is down, and recovers after it', async () => {
    const database = await open();
    await sql`SELECT 1`.execute(database.kysely);
    const inFlight = timed(() => sql`SELECT pg_sleep(0.2)`.execute(database.kysely));
    await server.stall();
    const stalled = await inFlight;
    // the client-side bound: 1 s statement timeout + 0.5 s grace, though the server never answers
    expect(stalled.error).toBeDefined();
    expect(isOutcomeUnknown(stalled.error)).toBe(true);
    expect(stalled.ms).toBeLessThan(2500);
    // the probe (connect timeout 1 s) finds the store down; then calls fail at once
    await pollUntil(() => !database.available(), 5000, 'store counted down');
    const fast = await timed(() => sql`SELECT 1`.execute(database.kysely));
    expect(fast.error).toBeInstanceOf(StoreError);
    expect(isOutcomeUnknown(fast.error)).toBe(false);
    expect(fast.ms).toBeLessThan(100);
    expect(statuses).toContainEqual(expect.objectContaining({ what: 'store', up: false }));
    server.resume();
    const recoveredMs = await pollUntil(() => answers(database), 10_000, 'service back after SIGCONT');
    expect(recoveredMs).toBeLessThan(5000);
    expect(database.available()).toBe(true);
    expect(statuses).toContainEqual({ what: 'store', up: true });
    // the connection that timed out was destroyed, not handed out again
    expect(database.poolStats()!.connectionFailures).toBeGreaterThan(0);
  }, 60_000);

  it('finds a stalled server before a long statement times out, and fails new calls fast meanwhile', async () => {
    const database = await open({ statementTimeoutMs: 10_000, connectTimeoutMs: 10_000 });
    await sql`SELECT 1`.execute(database.kysely);
    const started = Date.now();
    const inFlight = timed(() => sql`SELECT pg_sleep(0.2)`.execute(database.kysely));
    await server.stall();
    // probed once the statement is 1 s without answer; the probe gives up after 2 s
    await pollUntil(() => !database.available(), 5000, 'store counted down');
    expect(Date.now() - started).toBeLessThan(4500);
    const fast = await timed(() => sql`SELECT 1`.execute(database.kysely));
    expect(fast.error).toBeInstanceOf(StoreError);
    expect(fast.ms).toBeLessThan(100);
    server.resume();
    // the statement itself was answered once the server went on
    expect((await inFlight).error).toBeUndefined();
    await pollUntil(() => database.available(), 10_000, 'store back');
  }, 60_000);

  it('bounds a statement carrying a deadline (withStatementDeadline) by it when that is earlier than the statement timeout', async () => {
    const database = await open({ statementTimeoutMs: 10_000 });
    const call = await timed(() =>
      sql.raw(withStatementDeadline('SELECT pg_sleep(5)', Date.now() + 300)).execute(database.kysely),
    );
    expect(isOutcomeUnknown(call.error)).toBe(true);
    expect(call.ms).toBeGreaterThanOrEqual(300);
    expect(call.ms).toBeLessThan(1500);
    expect(await answers(database)).toBe(true);
  }, 30_000);

  it("answers the server's statement_timeout as a plain failure (nothing ran), keeping the connection", async () => {
    const database = await open({ statementTimeoutMs: 300, poolMax: 1 });
    const call = await timed(() => sql`SELECT pg_sleep(3)`.execute(database.kysely));
    expect((call.error as { code?: string }).code).toBe('57014');
    expect(isOutcomeUnknown(call.error)).toBe(false);
    expect(call.ms).toBeLessThan(800);
    expect(database.poolStats()!.connectionFailures).toBe(0);
  }, 30_000);

  it('bounds the callers waiting for a connection', async () => {
    const database = await open({ poolMax: 1, poolMaxWaiting: 1, statementTimeoutMs: 5000, connectTimeoutMs: 500 });
    const holder = sql`SELECT pg_sleep(1.5)`.execute(database.kysely);
    await pollUntil(() => database.poolStats()!.idle === 0 && database.poolStats()!.total === 1, 2000, 'connection busy');
    const waiter = timed(() => sql`SELECT 1`.execute(database.kysely));
    await pollUntil(() => database.poolStats()!.waiting === 1, 2000, 'one caller waiting');
    const refused = await timed(() => sql`SELECT 1`.execute(database.kysely));
    expect(refused.error).toBeInstanceOf(StoreError);
    expect(refused.ms).toBeLessThan(100);
    // and the one waiting gives up after the connect timeout, not when the holder is done
    const waited = await waiter;
    expect(waited.error).toBeInstanceOf(StoreError);
    expect(waited.ms).toBeLessThan(1200);
    await holder;
  }, 30_000);

  it('sends nothing for a caller whose deadline passed while it waited for a connection, and keeps the connection', async () => {
    const database = await open({ poolMax: 1, statementTimeoutMs: 5000, connectTimeoutMs: 3000 });
    const holder = sql`SELECT pg_sleep(0.6)`.execute(database.kysely);
    await pollUntil(() => database.poolStats()!.idle === 0 && database.poolStats()!.total === 1, 2000, 'connection busy');
    const late = await timed(() => sql.raw(withStatementDeadline('SELECT 42 AS late', Date.now() + 200)).execute(database.kysely));
    await holder;
    expect(late.error).toBeInstanceOf(StoreError);
    expect((late.error as Error).message).toMatch(/nothing was sent/);
    expect(database.poolStats()!.connectionFailures).toBe(0);
    expect(database.poolStats()!.total).toBe(1);
    expect(await answers(database)).toBe(true);
  }, 30_000);

  it('destroys a connection that answers read_only_sql_transaction and serves on a fresh one', async () => {
    const database = await open({ poolMax: 1 });
    await sql`CREATE TABLE IF NOT EXISTS faults.items (id int)`.execute(database.kysely);
    // the pool's only connection turns read-only, as on a primary demoted to a replica
    await sql`SET default_transaction_read_only = on`.execute(database.kysely);
    const refused = await timed(() => sql`INSERT INTO faults.items VALUES (1)`.execute(database.kysely));
    expect((refused.error as { code?: string }).code).toBe('25006');
    await pollUntil(() => answers(database), 5000, 'store available');
    await sql`INSERT INTO faults.items VALUES (2)`.execute(database.kysely);
  }, 30_000);

  it('counts a database that turned read-only as down until it takes writes again', async () => {
    const database = await open({ poolMax: 1 });
    await sql`CREATE TABLE IF NOT EXISTS faults.items (id int)`.execute(database.kysely);
    const { rows } = await sql<{ db: string }>`SELECT current_database() AS db`.execute(database.kysely);
    const name = rows[0]!.db;
    await sql`ALTER DATABASE ${sql.id(name)} SET default_transaction_read_only = on`.execute(database.kysely);
    try {
      // new connections are read-only now, as after a fail-over that made this server a replica
      await server.terminateBackends({ applicationName: 'cos-faults-spec' });
      await pollUntil(
        async () => {
          await sql`INSERT INTO faults.items VALUES (3)`.execute(database.kysely).catch(() => {});
          return !database.available();
        },
        10_000,
        'store counted down',
      );
      expect(statuses).toContainEqual(expect.objectContaining({ what: 'store', up: false }));
    } finally {
      await server.terminateBackends({ applicationName: 'cos-faults-spec' });
      // from another database: this one's sessions cannot write, ALTER DATABASE included
      const client = new pg.Client({ host: server.host, port: server.port, user: server.user, database: 'postgres' });
      client.on('error', () => {});
      await client.connect();
      await client.query(`ALTER DATABASE ${pg.escapeIdentifier(name)} SET default_transaction_read_only = off`);
      await client.end();
    }
    await pollUntil(() => database.available(), 10_000, 'store back');
    await sql`INSERT INTO faults.items VALUES (4)`.execute(database.kysely);
  }, 30_000);

  it('listens again after the LISTEN connection was lost (restart), so notifications resume', async () => {
    const database = await open();
    const received: string[] = [];
    await database.listen('faults_channel', (payload) => received.push(payload));
    await sql`SELECT pg_notify('faults_channel', 'before')`.execute(database.kysely);
    await pollUntil(() => received.includes('before'), 5000, 'first notification');
    await server.restart();
    let n = 0;
    // notifications sent before the LISTEN is back are lost: keep sending until one arrives
    await pollUntil(
      async () => {
        await sql`SELECT pg_notify('faults_channel', ${`after-${n++}`})`.execute(database.kysely).catch(() => {});
        return received.some((payload) => payload.startsWith('after-'));
      },
      10_000,
      'a notification after the restart',
    );
    expect(statuses).toContainEqual({ what: 'listen', up: true });
  }, 60_000);
});

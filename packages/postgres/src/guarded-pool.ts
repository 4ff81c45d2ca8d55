import type { PostgresCursor, PostgresPool, PostgresPoolClient, PostgresQueryResult } from 'kysely';
import type pg from 'pg';
import { StoreError } from '@chiefofstate/core';
import { isConnectionFailure, markOutcomeUnknown, sqlState } from './sql-errors.js';
import type { StoreAvailability } from './store-availability.js';

/**
 * A pg pool as Kysely's PostgresDialect wants it, made safe for a database that restarts,
 * stalls or drops connections:
 *
 * - every pooled client has an 'error' listener for its whole life, checked out or idle (pg's
 *   pool listens only while a client is idle; an error on a checked-out client crashed the
 *   process);
 * - every statement has a client-side timeout, which also works when the server does not answer
 *   at all (SIGSTOP, a half-open connection), where the server's statement_timeout never fires;
 * - a connection that failed, timed out or reached a read-only server is destroyed on release,
 *   never handed out again;
 * - callers wait for a connection a bounded time, and only so many may wait;
 * - while the store is known down, statements fail at once (StoreError) instead of each waiting
 *   for its own timeout.
 */
export interface GuardedPool extends PostgresPool {
  connect(): Promise<PostgresPoolClient>;
}

export interface GuardedPoolOptions {
  readonly pool: pg.Pool;
  readonly availability: StoreAvailability;
  /** client-side bound of a statement */
  readonly queryTimeoutMs: number;
  /** the bound of `sql`, about to be sent, given the default (e.g. shorter for a caller's deadline) */
  readonly timeoutMs?: (defaultMs: number, sql: string) => number;
  /** most callers waiting for a connection; beyond, StoreError at once */
  readonly maxWaiting: number;
  /**
   * a statement this long without answer has the store probed meanwhile, so a stalled server
   * is found (and calls fail fast) before the statement's own timeout. Default 1000
   */
  readonly slowStatementMs?: number;
}

/** The error a client-side statement timeout rejects with. */
export class ClientTimeoutError extends Error {
  constructor(readonly timeoutMs: number) {
    super(`no answer from the database within ${timeoutMs} ms`);
    this.name = 'ClientTimeoutError';
  }
}

/** `sent`, or a ClientTimeoutError once `timeoutMs` passed without its answer (its later rejection swallowed). */
export async function withinClientTimeout<T>(sent: Promise<T>, timeoutMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ClientTimeoutError(timeoutMs)), Math.max(1, timeoutMs));
  });
  try {
    return await Promise.race([sent, timedOut]);
  } finally {
    clearTimeout(timer);
    // the statement's own rejection after a timeout has nobody left to hear it
    sent.catch(() => {});
  }
}

/** Closes a client's socket now: a stalled server would never answer the polite goodbye. */
export function destroySocket(client: pg.ClientBase): void {
  (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
}

export function createGuardedPool(options: GuardedPoolOptions): GuardedPool {
  const { pool, availability, queryTimeoutMs, maxWaiting } = options;
  const slowStatementMs = options.slowStatementMs ?? 1000;
  const timeoutFor = options.timeoutMs ?? ((defaultMs: number) => defaultMs);
  const guarded = new WeakMap<pg.PoolClient, Guarded>();

  // Idle clients: pg's pool removes them; the listener only keeps the error from crashing.
  pool.on('error', () => {});
  pool.on('connect', (client) => {
    client.on('error', (error) => {
      // Checked out, between statements: the next statement (or the release) sees it.
      const entry = guarded.get(client as pg.PoolClient);
      // (already broken: the failure was counted, e.g. our own timeout closing the socket)
      if (entry?.broken !== undefined) return;
      if (entry) entry.broken = error;
      availability.suspect(error);
    });
  });

  const connect = async (): Promise<Guarded> => {
    if (!availability.available()) {
      throw new StoreError(`the database is unreachable: ${describe(availability.lastError())}`, {
        cause: availability.lastError(),
      });
    }
    if (pool.waitingCount >= maxWaiting) {
      throw new StoreError(`the database pool is exhausted: ${pool.waitingCount} callers already wait for a connection`);
    }
    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (error) {
      // pg's pool rejects a wait past connectionTimeoutMillis too; either way nothing was sent
      // (a wait for a busy pool is not the store's failure: the busy connections' timeouts are)
      if (!/timeout exceeded when trying to connect/i.test(describe(error))) availability.suspect(error);
      throw new StoreError(`cannot get a database connection: ${describe(error)}`, { cause: error });
    }
    // the store was found down while this caller waited: its statement would only wait too
    if (!availability.available()) {
      client.release();
      throw new StoreError(`the database is unreachable: ${describe(availability.lastError())}`, {
        cause: availability.lastError(),
      });
    }
    let entry = guarded.get(client);
    if (!entry) {
      entry = new Guarded(client, availability, (sql) => timeoutFor(queryTimeoutMs, sql), slowStatementMs);
      guarded.set(client, entry);
    }
    entry.released = false;
    return entry;
  };

  return { connect, end: () => pool.end() };
}

class Guarded implements PostgresPoolClient {
  /** why this connection must not be used again */
  broken: unknown;
  released = false;

  constructor(
    private readonly client: pg.PoolClient,
    private readonly availability: StoreAvailability,
    private readonly timeoutMs: (sql: string) => number,
    private readonly slowStatementMs: number,
  ) {}

  query<R>(sql: string, parameters: ReadonlyArray<unknown>): Promise<PostgresQueryResult<R>>;
  query<R>(cursor: PostgresCursor<R>): PostgresCursor<R>;
  query<R>(sqlOrCursor: string | PostgresCursor<R>, parameters?: ReadonlyArray<unknown>): Promise<PostgresQueryResult<R>> | PostgresCursor<R> {
    if (typeof sqlOrCursor !== 'string') return this.client.query(sqlOrCursor as never) as PostgresCursor<R>;
    return this.run<R>(sqlOrCursor, parameters ?? [], this.timeoutMs(sqlOrCursor));
  }

  private async run<R>(sql: string, parameters: ReadonlyArray<unknown>, timeoutMs: number): Promise<PostgresQueryResult<R>> {
    if (this.broken !== undefined) {
      // nothing is sent on a connection known to be broken
      throw new StoreError(`the database connection was lost: ${describe(this.broken)}`, { cause: this.broken });
    }
    if (timeoutMs <= 0) {
      // The caller's deadline passed while it waited for the connection: nothing is sent (a
      // timeout now would only cost a good connection).
      throw new StoreError('the caller stopped waiting before the statement was sent; nothing was sent');
    }
    const sent = this.client.query(sql, parameters as unknown[]) as unknown as Promise<PostgresQueryResult<R>>;
    const slow = timeoutMs > this.slowStatementMs ? setTimeout(() => this.availability.check(), this.slowStatementMs) : undefined;
    try {
      return await withinClientTimeout(sent, timeoutMs);
    } catch (error) {
      if (isConnectionFailure(error)) {
        this.broken ??= error;
        // the statement was on its way: it may have run (not so for a read-only refusal)
        if (sqlState(error) !== '25006') markOutcomeUnknown(error);
        destroySocket(this.client);
        this.availability.suspect(error);
      }
      throw error;
    } finally {
      clearTimeout(slow);
    }
  }

  release(discard?: boolean): void {
    if (this.released) return;
    if (discard) this.broken ??= new Error('connection discarded');
    this.released = true;
    // an error makes pg's pool end and drop the client instead of keeping it
    this.client.release(this.broken === undefined ? undefined : errorOf(this.broken));
  }

}

function errorOf(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value));
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

import { randomInt } from 'node:crypto';
import { sql } from 'kysely';
import type { DatabaseSession } from '@chiefofstate/postgres';
import type { LiveMember } from './fair-share.js';
import type { LeaseContext } from './lease-context.js';
import { lose } from './lease-handover.js';
import { roundSoon } from './lease-timers.js';

/*
 * Fast takeover of a dead process's leases. Each process holds a session-level advisory lock on
 * a connection of its own for its whole life, and publishes the lock's key with its heartbeat.
 * A process killed (SIGKILL, OOM, a crash) has its connections closed by the kernel, so
 * PostgreSQL ends its session at once and the lock is gone: the others, looking the published
 * keys up each round, then expire its heartbeat and leases instead of waiting out the lease
 * (they take them with the usual conditional upsert and epoch bump, so fencing is unchanged). While
 * the session is still there (a frozen process, a host or network failure) nothing changes: the
 * leases expire as before.
 */

/** First key of the session locks (the two-int4 advisory lock space, apart from bigint keys): 'COSL'. */
const SESSION_LOCK_CLASS = 0x434f534c;
/** Attempts at a free random second key (a taken one is another live session's). */
const LOCK_ATTEMPTS = 3;

/** This process's session and the key of the lock it holds on it. */
export interface SessionLock {
  readonly session: DatabaseSession;
  readonly key: number;
  /** the server process of the session, which holds the lock */
  readonly pid: number;
  /** a liveness check of the session is under way */
  checking: boolean;
}

/** A live member as the heartbeat reads it, with its published session lock key. */
export type MemberWithLock = LiveMember & { readonly session_lock: number | null };

/** Longest wait before another attempt at a session after failures (the first waits a round). */
const MAX_LOCK_BACKOFF_MS = 30_000;

/**
 * Opens this process's session and takes a lock on it, unless held already, turned off or not
 * supported (the embedded store). Once at a time; a failure is reported and retried by a later
 * round, backing off up to 30 s (the process runs on lease expiry alone meanwhile, publishing
 * no key).
 */
export function ensureSessionLock(c: LeaseContext): Promise<void> {
  if (!c.fastTakeover || c.lock !== undefined || c.state === 'closing' || performance.now() < c.lockRetryAt) return Promise.resolve();
  c.locking ??= lockSession(c)
    .then(
      () => void (c.lockFailures = 0),
      (error: unknown) => {
        c.lockFailures++;
        c.lockRetryAt = performance.now() + Math.min(MAX_LOCK_BACKOFF_MS, c.renewIntervalMs * 2 ** (c.lockFailures - 1));
        c.report(error);
      },
    )
    .finally(() => (c.locking = undefined));
  return c.locking ?? Promise.resolve(); // (undefined: it ended at once)
}

async function lockSession(c: LeaseContext): Promise<void> {
  const session = await c.openSession();
  if (session === undefined) {
    c.fastTakeover = false; // one process on the embedded store: nobody to take over from
    return;
  }
  let key: number | undefined;
  let pid = 0;
  try {
    for (let attempt = 0; attempt < LOCK_ATTEMPTS && key === undefined; attempt++) {
      const candidate = randomInt(-(2 ** 31), 2 ** 31);
      const [row] = await session.query<{ locked: boolean; pid: number }>(
        'SELECT pg_try_advisory_lock($1::int, $2::int) AS locked, pg_backend_pid() AS pid',
        [SESSION_LOCK_CLASS, candidate],
      );
      if (row?.locked === true) [key, pid] = [candidate, row.pid];
    }
  } catch (error) {
    await session.close();
    throw error;
  }
  if (key === undefined || c.state === 'closing') {
    await session.close();
    if (key === undefined) throw new Error(`no free session lock key in ${LOCK_ATTEMPTS} attempts`);
    return;
  }
  const lock: SessionLock = { session, key, pid, checking: false };
  c.lock = lock;
  void session.ended.then((reason) => sessionEnded(c, lock, reason));
}

/**
 * The session ended under a running process (the database restarted, the connection was killed
 * or broke): the others may take its leases at any moment now, so it stops them all at once
 * and gives them up, as when they were taken over. The next round opens a new session.
 */
function sessionEnded(c: LeaseContext, lock: SessionLock, reason: unknown): void {
  if (c.lock !== lock) return;
  c.lock = undefined;
  if (c.state !== 'running') return;
  const lost = [...c.leases].filter(([, lease]) => !lease.releasing).map(([stream]) => stream);
  if (lost.length === 0) return;
  c.report(new Error(`the lease session ended: ${lost.length} leases given up, the others may take them at once`, { cause: reason }));
  for (const stream of lost) lose(c, stream);
  void sql`UPDATE cos_stream_leases SET expires_at = now()
           WHERE owner = ${c.ownerId} AND stream = ANY(${lost}::text[]) AND expires_at > now()`
    .execute(c.kysely)
    .catch(c.report); // else they simply expire
}

/**
 * Runs a statement on the session (one at a time), so a session that died silently is found
 * out. It must answer from the server process that took the lock: through a pooler that hands
 * each transaction to any server connection (PgBouncer in transaction mode) the lock is not this
 * process's to keep, so the others could not tell its death from its life: fast takeover is
 * turned off for it (it publishes no key; its leases expire as before).
 */
export function checkSession(c: LeaseContext): void {
  const lock = c.lock;
  if (lock === undefined || lock.checking) return;
  lock.checking = true;
  // a failure ends the session: sessionEnded follows
  lock.session.query<{ pid: number }>('SELECT pg_backend_pid() AS pid').then(
    ([row]) => {
      lock.checking = false;
      if (row?.pid === lock.pid || c.lock !== lock) return;
      c.lock = undefined;
      c.fastTakeover = false;
      c.report(new Error(`the lease session moved to another server process (${lock.pid} → ${row?.pid}): a pooler that does not keep sessions? Fast takeover is off`));
      void lock.session.close();
    },
    () => {},
  );
}

/** Closes this process's session, its lock with it (on close, after the leases were given up). */
export async function closeSession(c: LeaseContext): Promise<void> {
  await c.locking;
  const lock = c.lock;
  c.lock = undefined;
  await lock?.session.close().catch(c.report);
}

/**
 * A peer could not reach `ownerId` (its connection refused): if its session ended, its leases
 * are expired and a round taken at once, rather than at the next round's time. One look-up at a
 * time, and not again within a quarter of the renewal interval (an owner alive but unreachable
 * from here would have every call for its streams ask).
 */
export function checkGone(c: LeaseContext, ownerId: string): void {
  const now = performance.now();
  if (c.state !== 'running' || c.checkingGone || now - c.goneCheckAt < c.renewIntervalMs / 4) return;
  const member = c.lastMembers.find((m) => m.owner === ownerId && m.session_lock !== null);
  if (member === undefined) return;
  c.checkingGone = true;
  c.goneCheckAt = now;
  reapGone(c, [member])
    .then((alive) => {
      if (alive.length === 0) roundSoon(c);
    })
    .catch(c.report)
    .finally(() => (c.checkingGone = false));
}

/**
 * Looks up the session locks of the other members; those nobody holds belong to sessions that
 * ended: their heartbeats and leases are expired now (only while the member still publishes
 * that key, so a process that reconnected with a new session is left alone). Returns the
 * members still alive. The lookup reads pg_locks (once) rather than trying the locks: it takes
 * nothing, so it cannot mistake a lock its own connection holds for a free one, nor keep one.
 */
export async function reapGone<M extends MemberWithLock>(c: LeaseContext, members: readonly M[]): Promise<M[]> {
  const probed = members.filter((member) => member.owner !== c.ownerId && member.session_lock !== null);
  if (probed.length === 0) return [...members];
  const { rows } = await sql<{ owner: string; expired_here: boolean }>`
    WITH held AS MATERIALIZED (
      SELECT objid FROM pg_locks
      WHERE locktype = 'advisory' AND classid = ${SESSION_LOCK_CLASS}::bigint::oid AND objsubid = 2
        AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
    ), gone AS (
      SELECT p.owner, p.key FROM unnest(${probed.map((m) => m.owner)}::text[], ${probed.map((m) => m.session_lock)}::int[]) AS p(owner, key)
      -- objid is the key's 32 bits, unsigned
      WHERE NOT EXISTS (SELECT 1 FROM held WHERE held.objid = (p.key::bigint & 4294967295)::oid)
    ), expired AS (
      UPDATE cos_stream_members m SET expires_at = now() FROM gone
      WHERE m.owner = gone.owner AND m.session_lock = gone.key AND m.expires_at > now()
      RETURNING m.owner
    ), freed AS (
      UPDATE cos_stream_leases l SET expires_at = now() FROM expired
      WHERE l.owner = expired.owner AND l.expires_at > now()
      RETURNING l.stream
    )
    SELECT g.owner, g.owner IN (SELECT owner FROM expired) AS expired_here FROM gone g
    WHERE g.owner IN (SELECT owner FROM expired)
       OR NOT EXISTS (SELECT 1 FROM cos_stream_members m WHERE m.owner = g.owner AND m.expires_at > now())`.execute(c.kysely);
  if (rows.length === 0) return [...members];
  for (const row of rows) if (row.expired_here) c.tookOver(row.owner);
  const gone = new Set(rows.map((row) => row.owner));
  return members.filter((member) => !gone.has(member.owner));
}

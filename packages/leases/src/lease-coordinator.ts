import { createHash } from 'node:crypto';
import { sql } from 'kysely';
import { InvalidArgumentError } from '@chiefofstate/core';
import type { Database } from '@chiefofstate/postgres';
import { createLeaseContext } from './lease-context.js';
import { release } from './lease-handover.js';
import { checkGone, closeSession, ensureSessionLock } from './lease-session.js';
import { roundNow, startTimers, stopTimers } from './lease-timers.js';

/** Why a stream is taken away from the host. */
export type ReleaseReason =
  /** another process should run it (balancing): finish the current work, record progress, stop */
  | 'rebalanced'
  /** the coordinator is closing: the same, then the lease is given up */
  | 'closing'
  /** the lease could not be renewed in time and may already be someone else's: stop at once */
  | 'lost';

/** What runs the streams: the coordinator tells it which ones are its to run. */
export interface StreamHost {
  /**
   * The lease of `stream` is now this process's: start running it. `epoch` grows with each
   * acquisition of the stream, by anyone: writes carrying it can fence earlier holders' writes.
   */
  acquired(stream: string, epoch: bigint): void;
  /**
   * Stop running `stream`. Resolve once the host no longer works on it; for 'rebalanced' and
   * 'closing' the lease is deleted only then, so the next owner starts after this one stopped.
   */
  released(stream: string, reason: ReleaseReason): Promise<void>;
}

export interface LeaseCoordinatorOptions {
  readonly database: Database;
  /** unique per process; default `<hostname>:<pid>:<random>` */
  readonly ownerId?: string;
  /** how long a lease lasts without renewal (takeover time after a crash), default 5000 ms */
  readonly leaseMs?: number;
  /** how often leases and the heartbeat are renewed, default leaseMs / 5; below leaseMs / 2 */
  readonly renewIntervalMs?: number;
  /** failures of background rounds (the database is down, ...); the coordinator keeps going */
  readonly onError?: (error: unknown) => void;
  /**
   * Where peers reach this process (`host:port`). Set by processes that route work to a stream's
   * owner: the coordinator then publishes it with its heartbeat and, each round, learns who holds
   * every stream of its set and where (`ownerOf`).
   */
  readonly address?: string;
  /**
   * Take the leases of a process whose database session ended (it was killed, or crashed) at
   * once, instead of after they expire: each process holds an advisory lock on a session of its
   * own, which the others probe each round. Default true; no effect on the embedded store. Turn
   * it off behind a pooler that does not keep sessions (PgBouncer in transaction mode).
   */
  readonly fastTakeover?: boolean;
  /** this process found `ownerId`'s session ended and expired its leases (fast takeover): for the log */
  readonly onTakeover?: (ownerId: string) => void;
}

/** Who holds a stream, as of the coordinator's latest round. */
export interface StreamOwner {
  readonly ownerId: string;
  /** the owner's published address; undefined when it published none */
  readonly address: string | undefined;
  /** whether the owner is this process */
  readonly self: boolean;
}

export interface LeaseCoordinator {
  readonly ownerId: string;
  /**
   * Joins the processes sharing `streams` (opaque keys) and starts renewing, acquiring and
   * balancing. Resolves after the first round, whose acquisitions the host has been told about.
   */
  start(streams: readonly string[], host: StreamHost): Promise<void>;
  /** The streams this process holds now (including those being released), sorted. */
  held(): string[];
  /**
   * The holder of `stream` as of the latest round: this process for the streams it holds, else
   * (only with `address` set) the live process whose unexpired lease names it. Undefined: nobody
   * holds it now (a takeover is under way) or owners are not tracked. A lease of this process
   * whose renewal is overdue (its validity ran out on this process's clock) is not reported.
   */
  ownerOf(stream: string): StreamOwner | undefined;
  /** Live processes sharing this process's set of streams, itself included, as of the latest round. */
  members(): number;
  /**
   * A caller could not reach the holder of `stream` (its connection was refused): with fast
   * takeover, whether its session ended is looked up now, and if so its leases are taken in a
   * round run at once instead of at the next round's time. Cheap to call for every failure.
   */
  ownerUnreachable(stream: string): void;
  /** Releases every stream ('closing'), gives up the leases and leaves. Idempotent. */
  close(): Promise<void>;
}

/**
 * Leases in PostgreSQL: a process owns a stream while its row in cos_stream_leases names it and
 * has not expired. Each round (every `renewIntervalMs`) a process renews its heartbeat and its
 * leases, computes its fair share of the streams from the live heartbeats, gives up what it
 * holds beyond that share, and takes free or expired streams up to it. Expiry is judged by the
 * database clock only, so the processes' clocks need not agree. A process stops trusting a lease
 * on its own clock one renewal interval before the lease could expire, so a stuck or partitioned
 * process stops before another one may take over.
 */
export function createLeaseCoordinator(options: LeaseCoordinatorOptions): LeaseCoordinator {
  const c = createLeaseContext(options);
  const { ownerId, leases, report } = c;
  let closing: Promise<void> | undefined;
  return {
    ownerId,

    async start(streams, streamHost) {
      if (c.state !== 'new') throw new InvalidArgumentError('the lease coordinator was already started');
      const sorted = [...new Set(streams)].sort();
      const fingerprint = createHash('sha256').update(JSON.stringify(sorted)).digest('hex').slice(0, 32);
      await sql`
        INSERT INTO cos_stream_sets (fingerprint, streams) VALUES (${fingerprint}, ${sorted}::text[])
        ON CONFLICT (fingerprint) DO NOTHING`.execute(c.kysely);
      if (c.state !== 'new') return; // closed meanwhile
      c.state = 'running';
      c.host = streamHost;
      c.myStreams = sorted;
      c.myFingerprint = fingerprint;
      c.knownSets.set(fingerprint, new Set(sorted));
      // the lock before the first lease, so that a process killed at any time after is seen dead
      await ensureSessionLock(c);
      if (c.state !== 'running') return; // closed meanwhile
      // A failed first round is retried by the next ones, like any other.
      await roundNow(c);
      if (c.state !== 'running') return; // closed during the first round
      startTimers(c);
    },

    held: () => [...leases.keys()].sort(),

    members: () => c.liveMembers,

    ownerUnreachable: (stream) => {
      const owner = c.others.get(stream);
      if (owner !== undefined) checkGone(c, owner.ownerId);
    },

    ownerOf: (stream) => {
      const lease = leases.get(stream);
      if (lease === undefined) return c.others.get(stream);
      // overdue: the watchdog gives it up soon; meanwhile another process may hold it
      return lease.validUntil >= performance.now() ? c.self : undefined;
    },

    close() {
      closing ??= (async () => {
        const wasRunning = c.state === 'running';
        c.state = 'closing';
        stopTimers(c);
        if (!wasRunning) return;
        await c.round?.catch(() => {});
        await Promise.all([...leases.keys()].map((stream) => release(c, stream, 'closing')));
        await sql`DELETE FROM cos_stream_members WHERE owner = ${ownerId}`.execute(c.kysely).catch(report);
      })().finally(() => closeSession(c));
      return closing;
    },
  };
}

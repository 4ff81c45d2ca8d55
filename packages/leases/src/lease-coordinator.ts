import { createHash, randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { sql, type Kysely } from 'kysely';
import { InvalidArgumentError } from '@chiefofstate/core';
import type { Database } from '@chiefofstate/postgres';
import { fairShare, type LiveMember, type StreamGroup } from './fair-share.js';

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
  /** Releases every stream ('closing'), gives up the leases and leaves. Idempotent. */
  close(): Promise<void>;
}

interface Lease {
  /** performance.now() after which the lease can no longer be trusted without a renewal */
  validUntil: number;
  releasing: Promise<void> | undefined;
}

const DEFAULT_LEASE_MS = 5_000;
/** Rounds between cleanups of long-dead member rows. */
const CLEANUP_EVERY = 60;

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
  const leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
  const renewIntervalMs = options.renewIntervalMs ?? Math.max(10, Math.floor(leaseMs / 5));
  if (!Number.isInteger(leaseMs) || leaseMs < 20) throw new InvalidArgumentError(`leaseMs must be an integer >= 20, got ${leaseMs}`);
  if (!Number.isInteger(renewIntervalMs) || renewIntervalMs < 1 || renewIntervalMs * 2 >= leaseMs) {
    throw new InvalidArgumentError(`renewIntervalMs must be a positive integer below leaseMs / 2, got ${renewIntervalMs}`);
  }
  const ownerId = options.ownerId ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  const kysely: Kysely<object> = options.database.kysely;
  const report = (error: unknown) => options.onError?.(error);
  const address = options.address ?? null;
  const self: StreamOwner = { ownerId, address: address ?? undefined, self: true };
  /** other processes' streams, replaced each round (only with an address) */
  let others = new Map<string, StreamOwner>();
  let liveMembers = 0;

  const leases = new Map<string, Lease>();
  const knownSets = new Map<string, ReadonlySet<string>>();
  let myStreams: string[] = [];
  let myFingerprint = '';
  let host: StreamHost | undefined;
  let rounds = 0;
  let timer: NodeJS.Timeout | undefined;
  let watchdog: NodeJS.Timeout | undefined;
  let round: Promise<void> | undefined;
  let state: 'new' | 'running' | 'closing' = 'new';
  let closing: Promise<void> | undefined;

  const interval = (ms: number) => sql`(${ms}::int * interval '1 millisecond')`;

  const lose = (stream: string) => {
    const lease = leases.get(stream);
    if (!lease) return;
    leases.delete(stream);
    host!.released(stream, 'lost').catch(report);
  };

  const release = (stream: string, reason: 'rebalanced' | 'closing'): Promise<void> => {
    const lease = leases.get(stream);
    if (!lease) return Promise.resolve();
    lease.releasing ??= (async () => {
      try {
        await host!.released(stream, reason);
      } catch (error) {
        report(error);
      }
      // Only now may another process take it: it starts after this one stopped.
      if (leases.get(stream) === lease) leases.delete(stream);
      await giveUp(stream).catch(report); // if this fails the lease simply expires
    })();
    return lease.releasing;
  };

  // Expired rather than deleted, so the stream's epoch keeps growing across holders.
  const giveUp = (stream: string) =>
    sql`UPDATE cos_stream_leases SET expires_at = now() WHERE owner = ${ownerId} AND stream = ${stream}`.execute(kysely);

  const heartbeat = async (): Promise<LiveMember[]> => {
    const { rows } = await sql<LiveMember>`
      WITH me AS (
        INSERT INTO cos_stream_members (owner, fingerprint, expires_at, address)
        VALUES (${ownerId}, ${myFingerprint}, now() + ${interval(leaseMs)}, ${address})
        ON CONFLICT (owner) DO UPDATE SET fingerprint = excluded.fingerprint, expires_at = excluded.expires_at,
          address = excluded.address
        RETURNING owner, fingerprint
      )
      SELECT owner, fingerprint FROM me
      UNION ALL
      SELECT owner, fingerprint FROM cos_stream_members WHERE expires_at > now() AND owner <> ${ownerId}`.execute(kysely);
    const unknown = [...new Set(rows.map((row) => row.fingerprint))].filter((f) => !knownSets.has(f));
    if (unknown.length > 0) {
      const sets = await sql<{ fingerprint: string; streams: string[] }>`
        SELECT fingerprint, streams FROM cos_stream_sets WHERE fingerprint = ANY(${unknown}::text[])`.execute(kysely);
      for (const set of sets.rows) knownSets.set(set.fingerprint, new Set(set.streams));
    }
    return rows;
  };

  const renew = async (startedAt: number) => {
    const streams = [...leases.keys()];
    if (streams.length === 0) return;
    const { rows } = await sql<{ stream: string }>`
      UPDATE cos_stream_leases SET expires_at = now() + ${interval(leaseMs)}
      WHERE owner = ${ownerId} AND stream = ANY(${streams}::text[])
      RETURNING stream`.execute(kysely);
    const renewed = new Set(rows.map((row) => row.stream));
    for (const stream of streams) {
      const lease = leases.get(stream);
      if (!lease) continue; // released meanwhile
      // The database set expiry to (its now, at or after startedAt) + leaseMs; stop trusting the
      // lease one renewal interval earlier than that, on this process's clock.
      if (renewed.has(stream)) lease.validUntil = startedAt + leaseMs - renewIntervalMs;
      else if (!lease.releasing) lose(stream); // taken over: it had expired, so this process was stuck
    }
  };

  const acquire = async (group: readonly string[], count: number, startedAt: number) => {
    // Start at a point that differs per process, so processes racing for free streams mostly
    // try different ones.
    const free = group.filter((stream) => !leases.has(stream));
    if (free.length === 0) return;
    const start = Number.parseInt(createHash('sha256').update(ownerId).digest('hex').slice(0, 8), 16) % free.length;
    const ordered = [...free.slice(start), ...free.slice(0, start)];
    const { rows } = await sql<{ stream: string; epoch: bigint | string }>`
      WITH candidates AS (
        SELECT c.stream FROM unnest(${ordered}::text[]) WITH ORDINALITY AS c(stream, i)
        LEFT JOIN cos_stream_leases l ON l.stream = c.stream
        WHERE l.stream IS NULL OR l.expires_at <= now()
        ORDER BY c.i
        LIMIT ${count}::int
      )
      INSERT INTO cos_stream_leases (stream, owner, expires_at, epoch)
      SELECT stream, ${ownerId}, now() + ${interval(leaseMs)}, 1 FROM candidates
      ON CONFLICT (stream) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at, acquired_at = now(),
        epoch = cos_stream_leases.epoch + 1
        WHERE cos_stream_leases.expires_at <= now()
      RETURNING stream, epoch`.execute(kysely);
    for (const { stream, epoch } of rows) {
      if (state !== 'running') {
        // closing began during the statement: hand it straight back
        await giveUp(stream);
        continue;
      }
      leases.set(stream, { validUntil: startedAt + leaseMs - renewIntervalMs, releasing: undefined });
      host!.acquired(stream, BigInt(epoch));
    }
  };

  const learnOwners = async () => {
    const { rows } = await sql<{ stream: string; owner: string; address: string | null }>`
      SELECT l.stream, l.owner, m.address FROM cos_stream_leases l
      JOIN cos_stream_members m ON m.owner = l.owner AND m.expires_at > now()
      WHERE l.stream = ANY(${myStreams}::text[]) AND l.expires_at > now() AND l.owner <> ${ownerId}`.execute(kysely);
    const next = new Map<string, StreamOwner>();
    for (const row of rows) next.set(row.stream, { ownerId: row.owner, address: row.address ?? undefined, self: false });
    others = next;
  };

  // The grouping only changes with the membership, so it is kept until that changes.
  let groupsCache: { signature: string; groups: StreamGroup[] } | undefined;
  const groupsFor = (members: readonly LiveMember[]): StreamGroup[] => {
    const signature = members
      .map((member) => `${member.owner}\t${member.fingerprint}\t${knownSets.has(member.fingerprint)}`)
      .sort()
      .join('\n');
    if (groupsCache?.signature !== signature) {
      groupsCache = { signature, groups: fairShare({ me: ownerId, myStreams, members, streamSets: knownSets }) };
    }
    return groupsCache.groups;
  };

  const runRound = async () => {
    const startedAt = performance.now();
    const members = await heartbeat();
    liveMembers = members.filter((member) => member.fingerprint === myFingerprint).length;
    await renew(startedAt);
    if (state !== 'running') return;
    for (const group of groupsFor(members)) {
      const active = group.streams.filter((stream) => {
        const lease = leases.get(stream);
        return lease !== undefined && !lease.releasing;
      });
      if (active.length > group.quota) {
        // give up the excess; the last ones in key order, so what a process keeps is predictable
        for (const stream of active.slice(group.quota)) void release(stream, 'rebalanced');
      } else if (active.length < group.quota) {
        await acquire(group.streams, group.quota - active.length, startedAt);
      }
    }
    if (address !== null) await learnOwners();
    if (++rounds % CLEANUP_EVERY === 0) {
      await sql`DELETE FROM cos_stream_members WHERE expires_at < now() - interval '1 hour'`.execute(kysely);
    }
  };

  const schedule = () => {
    if (state !== 'running') return;
    timer = setTimeout(() => {
      round = runRound()
        .catch(report)
        .finally(() => {
          round = undefined;
          schedule();
        });
    }, renewIntervalMs);
    timer.unref();
  };

  return {
    ownerId,

    async start(streams, streamHost) {
      if (state !== 'new') throw new InvalidArgumentError('the lease coordinator was already started');
      const sorted = [...new Set(streams)].sort();
      const fingerprint = createHash('sha256').update(JSON.stringify(sorted)).digest('hex').slice(0, 32);
      await sql`
        INSERT INTO cos_stream_sets (fingerprint, streams) VALUES (${fingerprint}, ${sorted}::text[])
        ON CONFLICT (fingerprint) DO NOTHING`.execute(kysely);
      if (state !== 'new') return; // closed meanwhile
      state = 'running';
      host = streamHost;
      myStreams = sorted;
      myFingerprint = fingerprint;
      knownSets.set(myFingerprint, new Set(myStreams));
      // A failed first round is retried by the next ones, like any other.
      round = runRound()
        .catch(report)
        .finally(() => (round = undefined));
      await round;
      if (state !== 'running') return; // closed during the first round
      // Leases whose renewal is overdue (the database is stuck) are given up locally.
      watchdog = setInterval(() => {
        const now = performance.now();
        for (const [stream, lease] of leases) if (lease.validUntil < now) lose(stream);
      }, Math.max(5, Math.floor(renewIntervalMs / 2)));
      watchdog.unref();
      schedule();
    },

    held: () => [...leases.keys()].sort(),

    members: () => liveMembers,

    ownerOf: (stream) => {
      const lease = leases.get(stream);
      if (lease === undefined) return others.get(stream);
      // overdue: the watchdog gives it up soon; meanwhile another process may hold it
      return lease.validUntil >= performance.now() ? self : undefined;
    },

    close() {
      closing ??= (async () => {
        const wasRunning = state === 'running';
        state = 'closing';
        clearTimeout(timer);
        clearInterval(watchdog);
        if (!wasRunning) return;
        await round?.catch(() => {});
        await Promise.all([...leases.keys()].map((stream) => release(stream, 'closing')));
        await sql`DELETE FROM cos_stream_members WHERE owner = ${ownerId}`.execute(kysely).catch(report);
      })();
      return closing;
    },
  };
}

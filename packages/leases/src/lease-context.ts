import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { sql, type Kysely } from 'kysely';
import { InvalidArgumentError } from '@chiefofstate/core';
import type { DatabaseSession } from '@chiefofstate/postgres';
import type { StreamGroup } from './fair-share.js';
import type { LeaseCoordinatorOptions, StreamHost, StreamOwner } from './lease-coordinator.js';
import type { MemberWithLock, SessionLock } from './lease-session.js';

/** A lease this process holds. */
export interface Lease {
  /** performance.now() after which the lease can no longer be trusted without a renewal */
  validUntil: number;
  releasing: Promise<void> | undefined;
}

/**
 * What the parts of a coordinator (its rounds, hand-overs, balancing and timers) share: its
 * settings and what it knows of the leases and the other processes. Created once per
 * coordinator; the parts are plain functions taking it.
 */
export interface LeaseContext {
  readonly ownerId: string;
  readonly kysely: Kysely<object>;
  readonly leaseMs: number;
  readonly renewIntervalMs: number;
  /** published with the heartbeat; null: owners are not tracked */
  readonly address: string | null;
  /** what ownerOf answers for the streams this process holds */
  readonly self: StreamOwner;
  readonly report: (error: unknown) => void;
  /** this process expired a dead owner's leases (fast takeover) */
  readonly tookOver: (ownerId: string) => void;
  readonly leases: Map<string, Lease>;
  /** stream sets by fingerprint, this process's and those of the live members read so far */
  readonly knownSets: Map<string, ReadonlySet<string>>;
  /** other processes' streams, replaced each round (only with an address) */
  others: Map<string, StreamOwner>;
  liveMembers: number;
  myStreams: string[];
  myFingerprint: string;
  host: StreamHost | undefined;
  state: 'new' | 'running' | 'closing';
  // ---- rounds (lease-round.ts) ----
  rounds: number;
  /** the round in progress */
  round: Promise<void> | undefined;
  /** another round is wanted as soon as this one ends (lease-timers.ts roundSoon) */
  roundAgain: boolean;
  /** the grouping only changes with the membership, so it is kept until that changes (lease-share.ts) */
  groupsCache: { signature: string; groups: StreamGroup[] } | undefined;
  // ---- session lock, for fast takeover (lease-session.ts) ----
  /** off by option, or found unsupported (the embedded store) */
  fastTakeover: boolean;
  readonly openSession: () => Promise<DatabaseSession | undefined>;
  /** held now; published with the heartbeat */
  lock: SessionLock | undefined;
  /** the session being opened and locked */
  locking: Promise<void> | undefined;
  /** failed attempts at a session in a row, and performance.now() before which none is made */
  lockFailures: number;
  lockRetryAt: number;
  /** the other members and their keys, as of the latest heartbeat */
  lastMembers: readonly MemberWithLock[];
  /** performance.now() of the latest look-up of an unreachable owner's session (checkGone); one at a time */
  goneCheckAt: number;
  checkingGone: boolean;
  // ---- timers (lease-timers.ts) ----
  timer: NodeJS.Timeout | undefined;
  watchdog: NodeJS.Timeout | undefined;
}

const DEFAULT_LEASE_MS = 5_000;

/** The coordinator's options, checked and with their defaults applied. */
export function createLeaseContext(options: LeaseCoordinatorOptions): LeaseContext {
  const leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
  const renewIntervalMs = options.renewIntervalMs ?? Math.max(10, Math.floor(leaseMs / 5));
  if (!Number.isInteger(leaseMs) || leaseMs < 20) throw new InvalidArgumentError(`leaseMs must be an integer >= 20, got ${leaseMs}`);
  if (!Number.isInteger(renewIntervalMs) || renewIntervalMs < 1 || renewIntervalMs * 2 >= leaseMs) {
    throw new InvalidArgumentError(`renewIntervalMs must be a positive integer below leaseMs / 2, got ${renewIntervalMs}`);
  }
  const ownerId = options.ownerId ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  const address = options.address ?? null;
  return {
    ownerId,
    kysely: options.database.kysely,
    leaseMs,
    renewIntervalMs,
    address,
    self: { ownerId, address: address ?? undefined, self: true },
    report: (error) => options.onError?.(error),
    tookOver: (ownerId) => options.onTakeover?.(ownerId),
    leases: new Map(),
    knownSets: new Map(),
    others: new Map(),
    liveMembers: 0,
    myStreams: [],
    myFingerprint: '',
    host: undefined,
    state: 'new',
    rounds: 0,
    round: undefined,
    roundAgain: false,
    groupsCache: undefined,
    fastTakeover: options.fastTakeover ?? true,
    openSession: () => options.database.openSession(),
    lock: undefined,
    locking: undefined,
    lockFailures: 0,
    lockRetryAt: -Infinity,
    lastMembers: [],
    goneCheckAt: -Infinity,
    checkingGone: false,
    timer: undefined,
    watchdog: undefined,
  };
}

/** `ms` milliseconds as an SQL interval. */
export const interval = (ms: number) => sql`(${ms}::int * interval '1 millisecond')`;

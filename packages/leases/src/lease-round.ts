import { sql } from 'kysely';
import { interval, type LeaseContext } from './lease-context.js';
import type { StreamOwner } from './lease-coordinator.js';
import { lose } from './lease-handover.js';
import { checkSession, ensureSessionLock, reapGone, type MemberWithLock } from './lease-session.js';
import { rebalance } from './lease-share.js';

/** Rounds between cleanups of long-dead member rows. */
const CLEANUP_EVERY = 60;

/**
 * One round: renews the heartbeat and the leases, balances, and (with an address) learns who
 * holds the other streams of the set.
 */
export async function runRound(c: LeaseContext): Promise<void> {
  const startedAt = performance.now();
  // in the background: neither may hold up the renewals
  checkSession(c);
  void ensureSessionLock(c);
  const members = await reapGone(c, await heartbeat(c));
  c.lastMembers = members;
  c.liveMembers = members.filter((member) => member.fingerprint === c.myFingerprint).length;
  await renew(c, startedAt);
  if (c.state !== 'running') return;
  await rebalance(c, members, startedAt);
  if (c.address !== null) await learnOwners(c);
  if (++c.rounds % CLEANUP_EVERY === 0) {
    await sql`DELETE FROM cos_stream_members WHERE expires_at < now() - interval '1 hour'`.execute(c.kysely);
  }
}

/**
 * Renews this process's membership (with the key of its session lock, if it holds one); the live
 * members, and the stream sets of those not known yet.
 */
async function heartbeat(c: LeaseContext): Promise<MemberWithLock[]> {
  const { rows } = await sql<MemberWithLock>`
    WITH me AS (
      INSERT INTO cos_stream_members (owner, fingerprint, expires_at, address, session_lock)
      VALUES (${c.ownerId}, ${c.myFingerprint}, now() + ${interval(c.leaseMs)}, ${c.address}, ${c.lock?.key ?? null}::int)
      ON CONFLICT (owner) DO UPDATE SET fingerprint = excluded.fingerprint, expires_at = excluded.expires_at,
        address = excluded.address, session_lock = excluded.session_lock
      RETURNING owner, fingerprint, session_lock
    )
    SELECT owner, fingerprint, session_lock FROM me
    UNION ALL
    SELECT owner, fingerprint, session_lock FROM cos_stream_members WHERE expires_at > now() AND owner <> ${c.ownerId}`.execute(c.kysely);
  const unknown = [...new Set(rows.map((row) => row.fingerprint))].filter((f) => !c.knownSets.has(f));
  if (unknown.length > 0) {
    const sets = await sql<{ fingerprint: string; streams: string[] }>`
      SELECT fingerprint, streams FROM cos_stream_sets WHERE fingerprint = ANY(${unknown}::text[])`.execute(c.kysely);
    for (const set of sets.rows) c.knownSets.set(set.fingerprint, new Set(set.streams));
  }
  return rows;
}

async function renew(c: LeaseContext, startedAt: number): Promise<void> {
  const streams = [...c.leases.keys()];
  if (streams.length === 0) return;
  // An expired lease is not renewed: it may be taken any moment (or was expired by a process
  // that found this one's session ended).
  const { rows } = await sql<{ stream: string }>`
    UPDATE cos_stream_leases SET expires_at = now() + ${interval(c.leaseMs)}
    WHERE owner = ${c.ownerId} AND stream = ANY(${streams}::text[]) AND expires_at > now()
    RETURNING stream`.execute(c.kysely);
  const renewed = new Set(rows.map((row) => row.stream));
  for (const stream of streams) {
    const lease = c.leases.get(stream);
    if (!lease) continue; // released meanwhile
    // The database set expiry to (its now, at or after startedAt) + leaseMs; stop trusting the
    // lease one renewal interval earlier than that, on this process's clock.
    if (renewed.has(stream)) lease.validUntil = startedAt + c.leaseMs - c.renewIntervalMs;
    else if (!lease.releasing) lose(c, stream); // taken over: it had expired, so this process was stuck
  }
}

async function learnOwners(c: LeaseContext): Promise<void> {
  const { rows } = await sql<{ stream: string; owner: string; address: string | null }>`
    SELECT l.stream, l.owner, m.address FROM cos_stream_leases l
    JOIN cos_stream_members m ON m.owner = l.owner AND m.expires_at > now()
    WHERE l.stream = ANY(${c.myStreams}::text[]) AND l.expires_at > now() AND l.owner <> ${c.ownerId}`.execute(c.kysely);
  const next = new Map<string, StreamOwner>();
  for (const row of rows) next.set(row.stream, { ownerId: row.owner, address: row.address ?? undefined, self: false });
  c.others = next;
}

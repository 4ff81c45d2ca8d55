import { createHash } from 'node:crypto';
import { sql } from 'kysely';
import { interval, type LeaseContext } from './lease-context.js';

/*
 * Taking leases and handing them back. Each acquisition bumps the stream's epoch, and a lease
 * given up is expired rather than deleted, so epochs never go back: writes carrying one can
 * fence earlier holders'.
 */

/** Takes up to `count` free or expired streams of `group`; the host is told of each. */
export async function acquire(c: LeaseContext, group: readonly string[], count: number, startedAt: number): Promise<void> {
  // Start at a point that differs per process, so processes racing for free streams mostly
  // try different ones.
  const free = group.filter((stream) => !c.leases.has(stream));
  if (free.length === 0) return;
  const start = Number.parseInt(createHash('sha256').update(c.ownerId).digest('hex').slice(0, 8), 16) % free.length;
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
    SELECT stream, ${c.ownerId}, now() + ${interval(c.leaseMs)}, 1 FROM candidates
    ON CONFLICT (stream) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at, acquired_at = now(),
      epoch = cos_stream_leases.epoch + 1
      WHERE cos_stream_leases.expires_at <= now()
    RETURNING stream, epoch`.execute(c.kysely);
  for (const { stream, epoch } of rows) {
    if (c.state !== 'running') {
      // closing began during the statement: hand it straight back
      await giveUp(c, stream);
      continue;
    }
    c.leases.set(stream, { validUntil: startedAt + c.leaseMs - c.renewIntervalMs, releasing: undefined });
    c.host!.acquired(stream, BigInt(epoch));
  }
}

/** The lease may already be someone else's: the host stops at once, nothing is written. */
export function lose(c: LeaseContext, stream: string): void {
  const lease = c.leases.get(stream);
  if (!lease) return;
  c.leases.delete(stream);
  c.host!.released(stream, 'lost').catch(c.report);
}

/** The host stops `stream`, then the lease is given up. Once per lease: later calls get the same promise. */
export function release(c: LeaseContext, stream: string, reason: 'rebalanced' | 'closing'): Promise<void> {
  const lease = c.leases.get(stream);
  if (!lease) return Promise.resolve();
  lease.releasing ??= (async () => {
    try {
      await c.host!.released(stream, reason);
    } catch (error) {
      c.report(error);
    }
    // Only now may another process take it: it starts after this one stopped.
    if (c.leases.get(stream) === lease) c.leases.delete(stream);
    await giveUp(c, stream).catch(c.report); // if this fails the lease simply expires
  })();
  return lease.releasing;
}

// Expired rather than deleted, so the stream's epoch keeps growing across holders.
function giveUp(c: LeaseContext, stream: string) {
  return sql`UPDATE cos_stream_leases SET expires_at = now() WHERE owner = ${c.ownerId} AND stream = ${stream}`.execute(c.kysely);
}

import { fairShare, type LiveMember, type StreamGroup } from './fair-share.js';
import type { LeaseContext } from './lease-context.js';
import { acquire, release } from './lease-handover.js';

/*
 * Balancing: this process's fair share of each group of streams, from the live members, and
 * the leases given up or taken to reach it.
 */

/** Gives up what this process holds beyond its share and takes free streams up to it. */
export async function rebalance(c: LeaseContext, members: readonly LiveMember[], startedAt: number): Promise<void> {
  for (const group of groupsFor(c, members)) {
    const active = group.streams.filter((stream) => {
      const lease = c.leases.get(stream);
      return lease !== undefined && !lease.releasing;
    });
    if (active.length > group.quota) {
      // give up the excess; the last ones in key order, so what a process keeps is predictable
      for (const stream of active.slice(group.quota)) void release(c, stream, 'rebalanced');
    } else if (active.length < group.quota) {
      await acquire(c, group.streams, group.quota - active.length, startedAt);
    }
  }
}

// The grouping only changes with the membership, so it is kept until that changes.
function groupsFor(c: LeaseContext, members: readonly LiveMember[]): StreamGroup[] {
  const signature = members
    .map((member) => `${member.owner}\t${member.fingerprint}\t${c.knownSets.has(member.fingerprint)}`)
    .sort()
    .join('\n');
  if (c.groupsCache?.signature !== signature) {
    c.groupsCache = { signature, groups: fairShare({ me: c.ownerId, myStreams: c.myStreams, members, streamSets: c.knownSets }) };
  }
  return c.groupsCache.groups;
}

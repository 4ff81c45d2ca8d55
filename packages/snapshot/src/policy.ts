import { InvalidArgumentError } from '@chiefofstate/core';

/** When to snapshot: COS_DISABLE_SNAPSHOT (enabled = !disabled) and COS_SNAPSHOT_FREQUENCY. */
export interface SnapshotPolicy {
  readonly enabled: boolean;
  /** snapshot every `frequency` events (a positive integer) */
  readonly frequency: number;
}

/**
 * Whether persisting the events that took an entity from `previousRevision` to `newRevision`
 * reached a multiple of `frequency`, i.e. whether some multiple lies in (previous, new]. A
 * command emitting several events can jump across a multiple without landing on it; that still
 * counts, so snapshots are never missed because of multi-event commands.
 */
export function shouldSnapshot(policy: SnapshotPolicy, previousRevision: bigint, newRevision: bigint): boolean {
  if (!policy.enabled) return false;
  if (!Number.isSafeInteger(policy.frequency) || policy.frequency < 1) {
    throw new InvalidArgumentError(`snapshot frequency must be a positive integer, got ${policy.frequency}`);
  }
  if (previousRevision < 0n || newRevision <= previousRevision) return false;
  const frequency = BigInt(policy.frequency);
  // Both revisions are non-negative here, so bigint division is floor division.
  return newRevision / frequency > previousRevision / frequency;
}

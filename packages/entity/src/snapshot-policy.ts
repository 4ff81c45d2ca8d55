import { InvalidArgumentError } from '@chiefofstate/core';

/** When to snapshot: COS_DISABLE_SNAPSHOT (enabled = !disabled) and COS_SNAPSHOT_FREQUENCY. */
export interface SnapshotPolicy {
  readonly enabled: boolean;
  /** snapshot every `frequency` events (a positive integer when enabled) */
  readonly frequency: number;
}

/** The policy as given; InvalidArgumentError when it is enabled with a frequency that is not a positive integer. */
export function checkSnapshotPolicy(policy: SnapshotPolicy): SnapshotPolicy {
  if (policy.enabled && (!Number.isSafeInteger(policy.frequency) || policy.frequency < 1)) {
    throw new InvalidArgumentError(`snapshot frequency must be a positive integer, got ${policy.frequency}`);
  }
  return policy;
}

/**
 * Whether persisting the events that took an entity from `previousRevision` to `newRevision`
 * reached a multiple of the frequency, i.e. whether a multiple lies in (previous, new]. A command
 * emitting several events can jump across a multiple without landing on it; that still counts, so
 * snapshots are never missed because of multi-event commands. The policy must have passed
 * checkSnapshotPolicy.
 */
export function shouldSnapshot(policy: SnapshotPolicy, previousRevision: number, newRevision: number): boolean {
  if (!policy.enabled || previousRevision < 0 || newRevision <= previousRevision) return false;
  return Math.floor(newRevision / policy.frequency) > Math.floor(previousRevision / policy.frequency);
}

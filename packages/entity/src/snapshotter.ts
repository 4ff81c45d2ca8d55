import { create, toBinary } from '@bufbuild/protobuf';
import type { Any } from '@bufbuild/protobuf/wkt';
import { StateWrapperSchema, type MetaData } from '@chiefofstate/protocol';
import type { Logger } from '@chiefofstate/core';
import type { JournalPort, SnapshotPort } from './ports.js';
import { shouldSnapshot, type SnapshotPolicy } from './snapshot-policy.js';

export interface SnapshotterOptions {
  readonly snapshots: SnapshotPort;
  readonly journal: JournalPort;
  /** checked (checkSnapshotPolicy) and enabled */
  readonly policy: SnapshotPolicy;
  /** after a snapshot, delete the events before the oldest retained one (COS_JOURNAL_LOGICAL_DELETION) */
  readonly logicalDeletion: boolean;
  /** most snapshot saves in flight; beyond, a snapshot is skipped (the next multiple takes one) */
  readonly maxPending: number;
  readonly logger: Logger;
}

/**
 * Takes the snapshots the policy asks for after appends, in the background: a reply never
 * waits for a snapshot, and a failed one is logged (the journal still has every event).
 */
export interface Snapshotter {
  /** the entity's events up to `meta.revisionNumber` were persisted, after `previousRevision` */
  appended(entityId: string, previousRevision: number, state: Any, meta: MetaData): void;
  /** resolves when no save is in flight (at close) */
  settled(): Promise<void>;
}

export function createSnapshotter(options: SnapshotterOptions): Snapshotter {
  const { snapshots, journal, policy, logicalDeletion, maxPending, logger } = options;
  const pending = new Set<Promise<void>>();

  async function save(entityId: string, state: Any, meta: MetaData): Promise<void> {
    const revision = BigInt(meta.revisionNumber);
    try {
      const payload = toBinary(StateWrapperSchema, create(StateWrapperSchema, { state, meta }));
      const { oldestRetainedRevision } = await snapshots.save({ entityId, revision, payload });
      if (logicalDeletion && oldestRetainedRevision > 0n) {
        const deleted = await journal.deleteEventsBefore(entityId, oldestRetainedRevision);
        logger.debug({ entityId, before: oldestRetainedRevision.toString(), deleted }, 'deleted events older than the oldest retained snapshot');
      }
    } catch (error) {
      logger.error({ entityId, revision: revision.toString(), err: error }, 'snapshot failed');
    }
  }

  return {
    appended(entityId, previousRevision, state, meta) {
      if (!shouldSnapshot(policy, previousRevision, meta.revisionNumber)) return;
      if (pending.size >= maxPending) {
        logger.warn({ entityId, revision: meta.revisionNumber }, 'snapshot skipped: too many snapshot saves in flight');
        return;
      }
      const task = save(entityId, state, meta).finally(() => pending.delete(task));
      pending.add(task);
    },
    async settled() {
      while (pending.size > 0) await Promise.allSettled([...pending]);
    },
  };
}

import { create, fromBinary } from '@bufbuild/protobuf';
import type { Any } from '@bufbuild/protobuf/wkt';
import { StoreError } from '@chiefofstate/core';
import { EventWrapperSchema, MetaDataSchema, StateWrapperSchema, emptyState, type MetaData } from '@chiefofstate/protocol';
import { anyFieldBytes } from './message-size.js';
import type { JournalPort, ReadOptions, SnapshotPort, StoredRevision } from './ports.js';

/** An entity as the store holds it. */
export interface StoredEntity {
  readonly revision: number;
  readonly state: Any;
  readonly meta: MetaData;
  /** serialized size of state and meta, as a reply would carry them (for the cache's bound) */
  readonly bytes: number;
}

/**
 * Reads an entity's latest state. Every event carries the state it resulted in, so the newest
 * event is enough; the newest snapshot is read only when the journal has no event of the entity
 * (all deleted after a snapshot). A never-seen entity is the Empty state at revision 0.
 */
export async function readStoredEntity(
  journal: JournalPort,
  snapshots: SnapshotPort | undefined,
  entityId: string,
  read: ReadOptions,
): Promise<StoredEntity> {
  return storedEntityOf(snapshots, entityId, await journal.readLatest(entityId, read), read);
}

/** The entity from its newest event, read already (undefined: none; then the newest snapshot). */
export async function storedEntityOf(
  snapshots: SnapshotPort | undefined,
  entityId: string,
  latest: StoredRevision | undefined,
  read: ReadOptions,
): Promise<StoredEntity> {
  if (latest !== undefined) {
    const wrapper = decode(entityId, latest, 'event', (bytes) => fromBinary(EventWrapperSchema, bytes));
    return stored(entityId, latest, wrapper.resultingState, wrapper.meta, latest.payload.byteLength - anyFieldBytes(wrapper.event));
  }
  const snapshot = snapshots && (await snapshots.loadLatest(entityId, read));
  if (snapshot !== undefined) {
    const wrapper = decode(entityId, snapshot, 'snapshot', (bytes) => fromBinary(StateWrapperSchema, bytes));
    return stored(entityId, snapshot, wrapper.state, wrapper.meta, snapshot.payload.byteLength);
  }
  return { revision: 0, state: emptyState(), meta: create(MetaDataSchema, { entityId }), bytes: 0 };
}

function stored(entityId: string, from: StoredRevision, state: Any | undefined, meta: MetaData | undefined, bytes: number): StoredEntity {
  const revision = Number(from.revision);
  return {
    revision,
    state: state ?? emptyState(),
    meta: meta ?? create(MetaDataSchema, { entityId, revisionNumber: revision }),
    bytes,
  };
}

function decode<T>(entityId: string, stored: StoredRevision, what: string, run: (payload: Uint8Array) => T): T {
  try {
    // A plain copy: drivers hand out Buffers that may be slices of a larger pooled buffer,
    // which the cached state's bytes fields would otherwise keep alive.
    return run(new Uint8Array(stored.payload));
  } catch (error) {
    throw new StoreError(
      `cannot decode the ${what} of ${JSON.stringify(entityId)} at revision ${stored.revision}: ${
        error instanceof Error ? error.message : String(error)
      }`,
      { cause: error },
    );
  }
}

import { sql } from 'kysely';
import { InvalidArgumentError, StoreError } from '@chiefofstate/core';
import { compiledWithDeadline, type Database } from '@chiefofstate/postgres';
import type { SnapshotTables } from './tables.js';

export interface SnapshotStoreOptions {
  readonly database: Database;
  /** how many snapshots to keep per entity (COS_NUM_SNAPSHOTS_TO_RETAIN), at least 1 */
  readonly retain: number;
}

/** The serialized chief_of_state.v1.StateWrapper of an entity at a revision. */
export interface Snapshot {
  readonly entityId: string;
  readonly revision: bigint;
  readonly writtenAt: Date;
  readonly payload: Uint8Array;
}

export interface SaveSnapshotResult {
  /**
   * The oldest snapshot revision still kept for the entity after pruning. With logical
   * deletion, events up to and including it may be deleted from the journal.
   */
  readonly oldestRetainedRevision: bigint;
}

export interface SnapshotStore {
  /**
   * Stores a snapshot and prunes the entity's older ones, keeping the `retain` newest, in one
   * transaction. Saving the same (entity, revision) again keeps the first payload.
   */
  save(snapshot: { readonly entityId: string; readonly revision: bigint; readonly payload: Uint8Array }): Promise<SaveSnapshotResult>;
  /**
   * The entity's newest snapshot, if any. `deadline` (epoch ms): the caller's, after which it
   * has no use for the answer; the read waits for the database until then at most.
   */
  loadLatest(entityId: string, options?: { readonly deadline?: number | undefined }): Promise<Snapshot | undefined>;
  /** All snapshots kept for the entity, newest first. */
  list(entityId: string): Promise<Snapshot[]>;
}

// First key of the two-key advisory lock that serialises saves of one entity; the second key is
// hashtext(entity_id). A distinct first key keeps these locks apart from other packages' locks.
const SNAPSHOT_LOCK_SPACE = 0x636f7301; // "cos" 1

/** Creates the snapshot store over tables created by `snapshotMigrations`. */
export function createSnapshotStore(options: SnapshotStoreOptions): SnapshotStore {
  const { retain } = options;
  if (!Number.isSafeInteger(retain) || retain < 1) {
    throw new InvalidArgumentError(`snapshots to retain must be an integer >= 1, got ${retain}`);
  }
  const db = options.database.kysely.withTables<SnapshotTables>();

  return {
    async save({ entityId, revision, payload }) {
      if (revision < 0n) throw new InvalidArgumentError(`snapshot revision must be >= 0, got ${revision}`);
      return guard(`saving the snapshot of ${JSON.stringify(entityId)} at revision ${revision}`, () =>
        db.transaction().execute(async (trx) => {
          // Without this lock two concurrent saves would each prune only what they can see
          // (READ COMMITTED hides the other's uncommitted row) and together keep retain + 1.
          await sql`select pg_advisory_xact_lock(${SNAPSHOT_LOCK_SPACE}::int4, hashtext(${entityId}))`.execute(trx);
          await trx
            .insertInto('cos_snapshots')
            .values({ entity_id: entityId, revision, payload })
            .onConflict((oc) => oc.columns(['entity_id', 'revision']).doNothing())
            .execute();
          // Keep the `retain` newest, delete the rest, and report the oldest kept, in one statement.
          const { rows } = await sql<{ oldest: bigint }>`
            with kept as (
              select revision from cos_snapshots where entity_id = ${entityId}
              order by revision desc limit ${retain}
            ), pruned as (
              delete from cos_snapshots
              where entity_id = ${entityId} and revision < (select min(revision) from kept)
            )
            select min(revision) as oldest from kept`.execute(trx);
          const oldest = rows[0]?.oldest;
          if (oldest === undefined || oldest === null) {
            throw new StoreError(`snapshot of ${JSON.stringify(entityId)} vanished while saving`);
          }
          return { oldestRetainedRevision: oldest };
        }),
      );
    },

    async loadLatest(entityId, options) {
      const query = db.selectFrom('cos_snapshots').selectAll().where('entity_id', '=', entityId).orderBy('revision', 'desc').limit(1);
      const { rows } = await guard(`loading the snapshot of ${JSON.stringify(entityId)}`, () =>
        db.executeQuery(compiledWithDeadline(query, options?.deadline)),
      );
      const row = rows[0];
      return row && toSnapshot(row);
    },

    async list(entityId) {
      const rows = await guard(`listing the snapshots of ${JSON.stringify(entityId)}`, () =>
        db
          .selectFrom('cos_snapshots')
          .selectAll()
          .where('entity_id', '=', entityId)
          .orderBy('revision', 'desc')
          .execute(),
      );
      return rows.map(toSnapshot);
    },
  };
}

function toSnapshot(row: { entity_id: string; revision: bigint; written_at: Date; payload: Uint8Array }): Snapshot {
  return { entityId: row.entity_id, revision: row.revision, writtenAt: row.written_at, payload: row.payload };
}

/** Reports database failures as StoreError, so the edge maps them in one place. */
async function guard<T>(what: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    if (error instanceof StoreError) throw error;
    throw new StoreError(`${what} failed: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
}

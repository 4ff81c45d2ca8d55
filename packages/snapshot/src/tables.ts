import type { ColumnType } from 'kysely';

/** Row of cos_snapshots. A type alias (not an interface), as `withTables<T>()` requires. */
export type SnapshotRow = {
  entity_id: string;
  revision: bigint;
  written_at: ColumnType<Date, Date | undefined, never>;
  payload: Uint8Array;
};

export type SnapshotTables = {
  cos_snapshots: SnapshotRow;
};

import type { ColumnType } from 'kysely';

/** Row of cos_read_side_offsets. A type alias (not an interface), as `withTables<T>()` requires. */
export type ReadSideOffsetRow = {
  read_side_id: string;
  shard: number;
  position: ColumnType<bigint, bigint | undefined, bigint>;
  paused: ColumnType<boolean, boolean | undefined, boolean>;
  updated_at: ColumnType<Date, Date | undefined, Date>;
};

export type OffsetStoreTables = {
  cos_read_side_offsets: ReadSideOffsetRow;
};

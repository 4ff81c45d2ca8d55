import type { ColumnType } from 'kysely';

/** Kysely table types of the lease tables (type aliases, as `withTables<T>()` requires). */
export type StreamLeaseRow = {
  stream: string;
  owner: string;
  expires_at: Date;
  acquired_at: ColumnType<Date, Date | undefined, Date>;
  /** bumped at each acquisition */
  epoch: ColumnType<bigint, bigint | undefined, bigint>;
};

export type StreamMemberRow = {
  owner: string;
  fingerprint: string;
  expires_at: Date;
  address: string | null;
  /** key of the member's session advisory lock (fast takeover); null without one */
  session_lock: number | null;
  started_at: ColumnType<Date, Date | undefined, Date>;
};

export type StreamSetRow = {
  fingerprint: string;
  streams: string[];
};

export type ClusterSecretRow = {
  id: ColumnType<boolean, boolean | undefined, boolean>;
  secret: Uint8Array;
  created_at: ColumnType<Date, Date | undefined, Date>;
};

export type LeaseTables = {
  cos_cluster_secret: ClusterSecretRow;
  cos_stream_leases: StreamLeaseRow;
  cos_stream_members: StreamMemberRow;
  cos_stream_sets: StreamSetRow;
};

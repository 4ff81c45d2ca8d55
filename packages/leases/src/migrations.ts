import { sql, type Kysely } from 'kysely';
import type { MigrationSet } from '@chiefofstate/postgres';

/**
 * The lease tables. Names are prefixed `2026-11-26-400-` so that they sort after the journal's
 * (`-100-`), the snapshots' (`-200-`) and the read-side offsets' (`-300-`) when the sets are
 * merged. Migrations are frozen once released: later changes are new entries, never edits.
 */
export const leaseMigrations: MigrationSet = {
  '2026-11-26-400-stream-leases': {
    async up(db: Kysely<unknown>) {
      // One row per stream that has ever been owned; the owner holds it while expires_at is ahead.
      await db.schema
        .createTable('cos_stream_leases')
        .addColumn('stream', 'text', (c) => c.primaryKey())
        .addColumn('owner', 'text', (c) => c.notNull())
        .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
        .addColumn('acquired_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .execute();
      await db.schema.createIndex('cos_stream_leases_owner').on('cos_stream_leases').column('owner').execute();
      // Live processes (heartbeats) and which set of streams each can run.
      await db.schema
        .createTable('cos_stream_members')
        .addColumn('owner', 'text', (c) => c.primaryKey())
        .addColumn('fingerprint', 'text', (c) => c.notNull())
        .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
        .addColumn('started_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .execute();
      // Stream sets by fingerprint, written once, so heartbeats stay small with thousands of streams.
      await db.schema
        .createTable('cos_stream_sets')
        .addColumn('fingerprint', 'text', (c) => c.primaryKey())
        .addColumn('streams', sql`text[]`, (c) => c.notNull())
        .execute();
    },
  },
  '2026-11-26-401-stream-member-address': {
    async up(db: Kysely<unknown>) {
      // Where a member can be reached by its peers (host:port), for processes that route work to
      // the owner of a stream (entity shards); null for those that only run streams.
      await db.schema.alterTable('cos_stream_members').addColumn('address', 'text').execute();
    },
  },
  '2026-12-05-410-stream-lease-epoch': {
    async up(db: Kysely<unknown>) {
      // Bumped at each acquisition of the stream: a holder's epoch fences writes of earlier
      // holders. Rows are no longer deleted on release, so epochs never go back.
      await db.schema
        .alterTable('cos_stream_leases')
        .addColumn('epoch', 'bigint', (c) => c.notNull().defaultTo(0))
        .execute();
    },
  },
  '2026-12-05-411-cluster-secret': {
    async up(db: Kysely<unknown>) {
      // One random secret shared by the processes of this database, for when COS_CLUSTER_SECRET
      // is unset: replicas prove with it that a forwarded call comes from one of them.
      await db.schema
        .createTable('cos_cluster_secret')
        .addColumn('id', 'boolean', (c) => c.primaryKey().defaultTo(true).check(sql`id`))
        .addColumn('secret', 'bytea', (c) => c.notNull())
        .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .execute();
    },
  },
  '2026-12-12-420-stream-member-session-lock': {
    async up(db: Kysely<unknown>) {
      // The key of the advisory lock a member holds on a session of its own (null: none, e.g. the
      // embedded store or a release without it): when that lock is free, the member's session
      // ended, i.e. its process died, and the others take its leases without waiting for expiry.
      await db.schema.alterTable('cos_stream_members').addColumn('session_lock', 'integer').execute();
    },
  },
};

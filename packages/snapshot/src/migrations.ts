import { sql, type Kysely } from 'kysely';
import type { MigrationSet } from '@chiefofstate/postgres';

/**
 * The snapshot table. Names are prefixed `2026-11-26-200-` so that they sort after the
 * journal's (`-100-`) and before the read-side offsets' (`-300-`) when the sets are merged.
 * Migrations are frozen once released: later changes are new entries, never edits.
 */
export const snapshotMigrations: MigrationSet = {
  '2026-11-26-200-snapshots': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('cos_snapshots')
        .addColumn('entity_id', 'text', (c) => c.notNull())
        .addColumn('revision', 'bigint', (c) => c.notNull())
        .addColumn('written_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .addColumn('payload', 'bytea', (c) => c.notNull())
        // (entity_id, revision) also serves "newest first per entity" by a backward index scan.
        .addPrimaryKeyConstraint('cos_snapshots_pkey', ['entity_id', 'revision'])
        .execute();
    },
  },
};

import { sql, type Kysely } from 'kysely';
import type { MigrationSet } from '@chiefofstate/postgres';

/**
 * The read-side offset table. Names are prefixed `2026-11-26-300-` so that they sort after the
 * journal's (`-100-`) and the snapshots' (`-200-`) when the sets are merged. Migrations are
 * frozen once released: later changes are new entries, never edits.
 */
export const offsetStoreMigrations: MigrationSet = {
  '2026-11-26-300-read-side-offsets': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('cos_read_side_offsets')
        .addColumn('read_side_id', 'text', (c) => c.notNull())
        .addColumn('shard', 'integer', (c) => c.notNull())
        .addColumn('position', 'bigint', (c) => c.notNull().defaultTo(0))
        .addColumn('paused', 'boolean', (c) => c.notNull().defaultTo(false))
        .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .addPrimaryKeyConstraint('cos_read_side_offsets_pkey', ['read_side_id', 'shard'])
        .execute();
    },
  },
};

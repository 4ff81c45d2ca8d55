import { Migrator, type Migration, type MigrationResultSet } from 'kysely';
import { StoreError } from '@chiefofstate/core';
import type { Database } from './database.js';

export type { Migration } from 'kysely';

/**
 * Migrations keyed by name. Names sort in the order they run, so every store package prefixes
 * its own with a date and sequence, e.g. `2026-11-26-001-journal`. Each package exports its
 * set; the composition root merges them and runs them once at start-up.
 */
export type MigrationSet = Readonly<Record<string, Migration>>;

export interface MigrateOptions {
  readonly database: Database;
  readonly migrations: MigrationSet;
}

/**
 * Brings the schema to the latest version with Kysely's Migrator. Safe when several processes
 * start at once: the Migrator holds a PostgreSQL advisory lock while it migrates, and a second
 * run finds nothing to do.
 */
export async function migrateToLatest(options: MigrateOptions): Promise<MigrationResultSet> {
  const { database, migrations } = options;
  const migrator = new Migrator({
    db: database.kysely,
    provider: { getMigrations: async () => ({ ...migrations }) },
    migrationTableSchema: database.schema,
    migrationTableName: 'cos_migrations',
    migrationLockTableName: 'cos_migrations_lock',
  });
  let result = await migrator.migrateToLatest();
  // Kysely looks for its migration table across every schema of the database; a schema another
  // process drops meanwhile fails that look-up (3F000 naming the other schema). Nothing ran yet:
  // look again, a bounded number of times, a little later each time (where schemas come and go
  // all the time, as in a test suite, five immediate looks were once not enough).
  for (let attempt = 1; attempt < MAX_LOOKS && droppedMeanwhile(result.error, database.schema); attempt++) {
    await new Promise((resolve) => setTimeout(resolve, 10 * attempt));
    result = await migrator.migrateToLatest();
  }
  if (result.error !== undefined) {
    const failed = result.results?.find((r) => r.status === 'Error')?.migrationName;
    const what = failed === undefined ? 'schema migrations' : `schema migration ${failed}`;
    throw new StoreError(`${what} failed in schema ${database.schema}: ${describe(result.error)}`, {
      cause: result.error,
    });
  }
  return result;
}

/** Looks for the migration table before giving up on schemas dropped meanwhile (about 2 s in all). */
const MAX_LOOKS = 20;

function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' ? `${error.message} (${code})` : error.message;
}

function droppedMeanwhile(error: unknown, schema: string): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const { code, message } = error as { code?: unknown; message?: unknown };
  return code === '3F000' && typeof message === 'string' && !message.includes(`"${schema}"`);
}

/** Merges migration sets, refusing two packages that claim the same migration name. */
export function mergeMigrations(...sets: readonly MigrationSet[]): MigrationSet {
  const merged: Record<string, Migration> = {};
  for (const set of sets) {
    for (const [name, migration] of Object.entries(set)) {
      if (name in merged) throw new Error(`migration ${name} is defined twice`);
      merged[name] = migration;
    }
  }
  return merged;
}

import { journalMigrations } from '@chiefofstate/journal';
import {
  createDatabase,
  mergeMigrations,
  migrateToLatest,
  type Database,
  type DatabaseOptions,
  type MigrationSet,
} from '@chiefofstate/postgres';
import { readSideMigrations } from '@chiefofstate/read-side';
import { snapshotMigrations } from '@chiefofstate/snapshot';

/**
 * Every migration of every COS table. Kysely's Migrator refuses a database that ran migrations
 * it does not know, so every process sharing a database (cos-server, cos-readside) migrates with
 * this one set, and any of them may start first.
 */
export const cosMigrations: MigrationSet = mergeMigrations(journalMigrations, snapshotMigrations, readSideMigrations);

export interface OpenCosStoreOptions {
  /** the store: PostgreSQL or the embedded one (COS_POSTGRES_* / COS_DATA_DIR) */
  readonly store: DatabaseOptions;
  /** reported to PostgreSQL as application_name (COS_SERVICE_NAME) */
  readonly applicationName: string;
}

/** Opens the COS database and brings every COS table to the latest version. */
export async function openCosStore(options: OpenCosStoreOptions): Promise<Database> {
  const { store } = options;
  const database = await createDatabase(
    store.kind === 'postgres' ? { ...store, applicationName: options.applicationName } : store,
  );
  try {
    await migrateToLatest({ database, migrations: cosMigrations });
  } catch (error) {
    await database.close();
    throw error;
  }
  return database;
}

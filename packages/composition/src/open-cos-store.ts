import type { Logger } from '@chiefofstate/core';
import { journalMigrations } from '@chiefofstate/journal';
import {
  createDatabase,
  mergeMigrations,
  migrateToLatest,
  type Database,
  type DatabaseOptions,
  type DatabaseStatus,
  type MigrationSet,
} from '@chiefofstate/postgres';
import { snapshotMigrations } from '@chiefofstate/snapshot';
import { readSideMigrations } from './start-read-sides.js';

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
  /** the store going down and coming back, the LISTEN connection lost and back (see logDatabaseStatus) */
  readonly onStatus?: (status: DatabaseStatus) => void;
}

/** Opens the COS database and brings every COS table to the latest version. */
export async function openCosStore(options: OpenCosStoreOptions): Promise<Database> {
  const { store } = options;
  const database = await createDatabase(
    store.kind === 'postgres'
      ? { ...store, applicationName: options.applicationName, ...(options.onStatus ? { onStatus: options.onStatus } : {}) }
      : store,
  );
  try {
    await migrateToLatest({ database, migrations: cosMigrations });
  } catch (error) {
    await database.close();
    throw error;
  }
  return database;
}

export interface OpenSidePoolOptions extends OpenCosStoreOptions {
  /** what the pool is for, in application_name and logs: `<applicationName>-<purpose>` */
  readonly purpose: string;
  /** its connections. Default 2 */
  readonly poolMax?: number;
}

/**
 * A small pool of its own on the COS database (already migrated) for a job that must not wait
 * behind the store's traffic, such as renewing shard leases: under load the store's pool can
 * be busy for longer than a lease lasts. Undefined for the embedded store, whose one process
 * has one connection for everything.
 */
export async function openSidePool(options: OpenSidePoolOptions): Promise<Database | undefined> {
  const { store } = options;
  if (store.kind !== 'postgres') return undefined;
  return createDatabase({
    ...store,
    poolMax: options.poolMax ?? 2,
    applicationName: `${options.applicationName}-${options.purpose}`,
    ...(options.onStatus ? { onStatus: options.onStatus } : {}),
  });
}

/**
 * An `onStatus` that logs the store going down (error) and coming back (info), the LISTEN
 * connection lost and back, and rotated TLS files taken or refused, per pool.
 */
export function logDatabaseStatus(logger: Logger, pool: string): (status: DatabaseStatus) => void {
  return ({ what, up, error }) => {
    if (what === 'tls') {
      if (up) logger.info({ pool }, 'PostgreSQL TLS files changed: new connections use them');
      else logger.error({ pool, err: error }, 'PostgreSQL TLS files changed but cannot be used: new connections keep the previous ones');
    } else if (what === 'store') {
      if (up) logger.info({ pool }, 'database reachable again: serving');
      else logger.error({ pool, err: error }, 'database unreachable: calls fail with UNAVAILABLE until it answers');
    } else if (up) {
      logger.info({ pool }, 'LISTEN connection back: notifications resume');
    } else {
      logger.error({ pool, err: error }, 'LISTEN connection lost: reconnecting (read sides poll meanwhile)');
    }
  };
}

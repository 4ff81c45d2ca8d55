export {
  createDatabase,
  notify,
  type Database,
  type DatabaseOptions,
  type DatabaseSession,
  type DatabaseStatus,
  type EmbeddedConnectionOptions,
  type NotificationListener,
  type PoolStats,
  type PostgresConnectionOptions,
} from './database.js';
export { ClientTimeoutError } from './guarded-pool.js';
export { migrateToLatest, mergeMigrations, type Migration, type MigrateOptions, type MigrationSet } from './migrations.js';
export { PGliteDialect } from './pglite-dialect.js';
export {
  createPostgresTls,
  explainTlsFailure,
  POSTGRES_SSL_MODES,
  SYSTEM_ROOT_CERTS,
  type PostgresTls,
  type PostgresTlsEvents,
  type PostgresSslMode,
  type PostgresTlsOptions,
} from './postgres-tls.js';
export { compiledWithDeadline, statementDeadlineOf, withStatementDeadline } from './statement-deadline.js';
export { isConnectionFailure, isOutcomeUnknown, isStatementTimeout, isUniqueViolation, sqlState } from './sql-errors.js';

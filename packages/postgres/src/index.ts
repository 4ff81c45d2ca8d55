export {
  createDatabase,
  isUniqueViolation,
  notify,
  type Database,
  type DatabaseOptions,
  type EmbeddedConnectionOptions,
  type NotificationListener,
  type PoolStats,
  type PostgresConnectionOptions,
} from './database.js';
export { migrateToLatest, mergeMigrations, type Migration, type MigrateOptions, type MigrationSet } from './migrations.js';
export { PGliteDialect } from './pglite-dialect.js';

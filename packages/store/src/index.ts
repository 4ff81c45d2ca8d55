export {
  cosMigrations,
  logDatabaseStatus,
  openCosStore,
  openSidePool,
  type DatabaseStatusLogger,
  type OpenCosStoreOptions,
  type OpenSidePoolOptions,
} from './open-cos-store.js';

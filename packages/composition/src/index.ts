export {
  cosMigrations,
  logDatabaseStatus,
  openCosStore,
  openSidePool,
  type DatabaseStatusLogger,
  type OpenCosStoreOptions,
  type OpenSidePoolOptions,
} from './open-cos-store.js';
export {
  readSideMigrations,
  startReadSides,
  type FieldsFirstLogger,
  type ReadSideSample,
  type RunningReadSides,
  type StartReadSidesOptions,
} from './start-read-sides.js';

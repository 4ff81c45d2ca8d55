export {
  cosMigrations,
  logDatabaseStatus,
  openCosStore,
  openSidePool,
  type OpenCosStoreOptions,
  type OpenSidePoolOptions,
} from './open-cos-store.js';
export {
  readSideMigrations,
  startReadSides,
  type ReadSideSample,
  type RunningReadSides,
  type StartReadSidesOptions,
} from './start-read-sides.js';

export { cosMigrations, openCosStore, type OpenCosStoreOptions } from './open-cos-store.js';

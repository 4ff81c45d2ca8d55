export { offsetStoreMigrations } from './migrations.js';
export {
  createOffsetStore,
  type OffsetStore,
  type OffsetStoreOptions,
  type ShardOffset,
} from './offset-store.js';
export type { OffsetStoreTables, ReadSideOffsetRow } from './tables.js';

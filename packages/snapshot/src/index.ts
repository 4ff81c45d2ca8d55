export { snapshotMigrations } from './migrations.js';
export {
  createSnapshotStore,
  type SaveSnapshotResult,
  type Snapshot,
  type SnapshotStore,
  type SnapshotStoreOptions,
} from './snapshot-store.js';
export type { SnapshotRow, SnapshotTables } from './tables.js';

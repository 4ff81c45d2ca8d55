export {
  createEntityRuntime,
  type EntityRuntime,
  type EntityRuntimeOptions,
  type EntityRuntimeStats,
  type IdempotencyEvent,
} from './entity-runtime.js';
export { shouldSnapshot, type SnapshotPolicy } from './snapshot-policy.js';
export type { RefusalReason } from './refusals.js';
export type {
  Clock,
  HandlerCallOptions,
  JournalAppend,
  JournalAppendResult,
  JournalPort,
  KeyRecord,
  LatestWithKeys,
  ReadOptions,
  SnapshotPort,
  SnapshotSave,
  StoredKey,
  StoredKeyDigest,
  StoredRevision,
  WriteHandlerPort,
} from './ports.js';

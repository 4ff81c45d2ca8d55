export {
  createEntityRuntime,
  type EntityRuntime,
  type EntityRuntimeOptions,
  type EntityRuntimeStats,
  type EntityState,
  type IdempotencyEvent,
  type ProcessCommandRequest,
  type SnapshotPolicy,
} from './entity-runtime.js';
export type { RefusalReason } from './refusals.js';
export type {
  Clock,
  HandlerCallOptions,
  JournalAppend,
  JournalAppendResult,
  JournalPort,
  KeyRecord,
  Logger,
  SnapshotPort,
  SnapshotSave,
  StoredKey,
  StoredKeyDigest,
  StoredRevision,
  WriteHandlerPort,
} from './ports.js';

export {
  createEntityRuntime,
  type EntityRuntime,
  type EntityRuntimeOptions,
  type EntityRuntimeStats,
  type EntityState,
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
  Logger,
  SnapshotPort,
  SnapshotSave,
  StoredRevision,
  WriteHandlerPort,
} from './ports.js';

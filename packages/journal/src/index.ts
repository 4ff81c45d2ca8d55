export {
  createJournal,
  type AppendRequest,
  type IdempotencyRecord,
  type StoredKey,
  type StoredKeyDigest,
  type JournalBatchInfo,
  type AppendResult,
  type Journal,
  type JournalEvent,
  type JournalOptions,
  type ReadAllOptions,
  type ReadEntityOptions,
  type ReadOptions,
  type ReadShardOptions,
} from './journal.js';
export {
  JOURNAL_LOCK_CLASS,
  JOURNAL_NOTIFY_CHANNEL,
  journalMigrations,
  type IdempotencyKeyTables,
  type JournalFenceTables,
  type JournalTables,
} from './schema.js';
export { startKeyExpiry, type KeyExpiry, type KeyExpiryOptions } from './key-expiry.js';

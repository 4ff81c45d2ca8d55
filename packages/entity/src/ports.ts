import type { Context } from '@opentelemetry/api';
import type { OutgoingCallOptions } from '@chiefofstate/core';
import type {
  HandleCommandRequest,
  HandleCommandResponse,
  HandleEventRequest,
  HandleEventResponse,
} from '@chiefofstate/protocol';

/*
 * The narrow interfaces the entity runtime needs. The real packages satisfy them structurally:
 * @chiefofstate/journal's Journal, @chiefofstate/snapshot's SnapshotStore and
 * @chiefofstate/handler-client's WriteSideClient.
 */

/** One stored payload with its revision: a serialized EventWrapper or StateWrapper. */
export interface StoredRevision {
  revision: bigint;
  payload: Uint8Array;
}

export interface JournalAppend {
  entityId: string;
  /** the entity's revision before these events; the store rejects the append when it moved on */
  expectedRevision: bigint;
  /** serialized EventWrappers, revisions expectedRevision+1, +2, ... */
  events: readonly Uint8Array[];
  /** the OpenTelemetry context to trace the append in (its command's) */
  traceContext?: Context;
  /** epoch ms: the latest deadline of the commands whose events these are (bounds the database wait) */
  deadline?: number;
  /**
   * This replica's lease epoch of the entity's shard (see `fenceOf`): the store refuses the
   * append with FencedError (@chiefofstate/core) once a later lease holder fenced it.
   */
  fence?: bigint;
  /**
   * Idempotency keys recorded in the append's transaction when it is accepted. An append may
   * carry keys and no event; it is then accepted only when expectedRevision is still the latest.
   */
  keys?: readonly KeyRecord[];
}

/** An idempotency key with its command's digest and outcome (@chiefofstate/journal's IdempotencyRecord). */
export interface KeyRecord {
  readonly key: string;
  /** SHA-256 of the command body, 32 bytes */
  readonly digest: Uint8Array;
  /** undefined: `outcome` is the serialized ProcessCommandResponse; else the error's stable code, and `outcome` its google.rpc.Status */
  readonly errorKind?: string | undefined;
  readonly outcome: Uint8Array;
}

/** A recorded key without its outcome. */
export interface StoredKeyDigest {
  readonly key: string;
  readonly digest: Uint8Array;
  readonly recordedAt: Date;
}

/** A recorded key with its outcome. */
export interface StoredKey extends StoredKeyDigest, KeyRecord {}

export interface JournalAppendResult {
  firstRevision: bigint;
  lastRevision: bigint;
  positions: readonly bigint[];
  writtenAt: Date;
}

export interface JournalPort {
  /**
   * Appends all events atomically; resolves only after the commit. Throws
   * JournalConflictError (@chiefofstate/core) when expectedRevision is stale, and
   * CommitOutcomeUnknownError when the events may or may not be persisted (never retried).
   */
  append(request: JournalAppend): Promise<JournalAppendResult>;
  /** The newest event of the entity, or undefined when it has none. */
  readLatest(entityId: string, options?: ReadOptions): Promise<StoredRevision | undefined>;
  /** Deletes the entity's events with a revision below `revision`; returns how many. */
  deleteEventsBefore(entityId: string, revision: bigint): Promise<number>;
  /**
   * The entity's idempotency keys recorded within the retention window, without outcomes, at most
   * `limit`: fewer than `limit` means all of them.
   */
  readKeys(entityId: string, limit: number, options?: ReadOptions): Promise<StoredKeyDigest[]>;
  /**
   * `readLatest` and `readKeys` in one round trip: what an entity's first keyed command needs
   * before it can run.
   */
  readLatestWithKeys(entityId: string, keyLimit: number, options?: ReadOptions): Promise<LatestWithKeys>;
  /** Those of `keys` the entity recorded within the retention window, with their outcomes. */
  findKeys(entityId: string, keys: readonly string[], options?: ReadOptions): Promise<StoredKey[]>;
}

export interface LatestWithKeys {
  readonly latest: StoredRevision | undefined;
  readonly keys: StoredKeyDigest[];
}

/** A read on behalf of commands or a GetState. */
export interface ReadOptions {
  /** epoch ms after which nobody waits for the answer (the latest deadline of its callers) */
  readonly deadline?: number | undefined;
}

export interface SnapshotSave {
  entityId: string;
  revision: bigint;
  /** a serialized StateWrapper */
  payload: Uint8Array;
}

export interface SnapshotPort {
  /** Saves a snapshot; returns the oldest revision still covered by a retained snapshot. */
  save(snapshot: SnapshotSave): Promise<{ oldestRetainedRevision: bigint }>;
  loadLatest(entityId: string, options?: ReadOptions): Promise<StoredRevision | undefined>;
}

/** Call options of a handler call (the command's); @chiefofstate/handler-client's HandlerCallOptions is wider. */
export type HandlerCallOptions = OutgoingCallOptions;

/** The user's WriteSideHandlerService. Errors it throws reach the caller unchanged. */
export interface WriteHandlerPort {
  handleCommand(request: HandleCommandRequest, call?: HandlerCallOptions): Promise<HandleCommandResponse>;
  handleEvent(request: HandleEventRequest, call?: HandlerCallOptions): Promise<HandleEventResponse>;
}

export interface Clock {
  now(): Date;
}

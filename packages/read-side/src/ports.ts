import type { HandleReadSideRequest, HandleReadSideResponse } from '@chiefofstate/protocol';
import type { OutgoingCallOptions } from '@chiefofstate/core';

/*
 * The narrow interfaces the read-side engine needs. The real packages satisfy them
 * structurally: @chiefofstate/journal's Journal, @chiefofstate/offset-store's OffsetStore,
 * @chiefofstate/handler-client's ReadSideClient, @chiefofstate/leases' LeaseCoordinator and
 * @chiefofstate/postgres's Database (for LISTEN).
 */

/** One journal event as the engine reads it. */
export interface JournalEventRecord {
  readonly position: bigint;
  readonly entityId: string;
  readonly shard: number;
  /** a serialized chief_of_state.v1.EventWrapper */
  readonly payload: Uint8Array;
}

export interface JournalReader {
  /**
   * Events of one shard with position > afterPosition, ascending. Must never skip: an event that
   * becomes visible later has a higher position than every event visible now.
   */
  readShard(options: { shard: number; afterPosition: bigint; limit: number }): Promise<readonly JournalEventRecord[]>;
}

export interface StoredOffset {
  /** journal position of the last processed event; 0n when nothing was processed */
  readonly position: bigint;
  readonly paused: boolean;
}

export interface OffsetPort {
  /** Creates the missing rows of shards 0..numShards-1 with that pause flag. */
  ensure(readSideId: string, numShards: number, options: { readonly paused: boolean }): Promise<void>;
  get(readSideId: string, shard: number): Promise<StoredOffset>;
  list(readSideId: string, numShards: number): Promise<readonly (StoredOffset & { readonly shard: number })[]>;
  /** Compare-and-set: sets `position` only if the stored one is still `expected`. */
  commitIf(readSideId: string, shard: number, expected: bigint, position: bigint): Promise<boolean>;
  reset(readSideId: string, shard?: number): Promise<void>;
  setPaused(readSideId: string, paused: boolean, shard?: number): Promise<void>;
}

/** A delivery's call (its traceContext: the delivery's, parent of the call's client span). */
export interface ReadSideCallOptions extends OutgoingCallOptions {
  /** the journal event delivered, as stored (a publisher sends its payload as is) */
  record?: JournalEventRecord;
}

export interface BatchCallOptions {
  signal?: AbortSignal;
  /** the read side's timeout; the handler applies it to its steps (a publisher: to each acknowledgement) */
  timeoutMs?: number;
}

/**
 * The user's ReadSideHandlerService. Failures are thrown (any error counts as a failure).
 *
 * `handleBatch` (optional; publishers have it): takes a batch of one shard's events, in position
 * order, at once, and resolves once every one was accepted. On failure it throws; an error with a
 * numeric `accepted` says how many leading events of the batch were accepted all the same (they
 * count as delivered). The engine then delivers the first event not accepted with
 * `handleReadSide`, under the failure policy, and goes on in batches after it.
 *
 * `overlapBatches` (publishers): handleBatch may be called with a shard's next batch before the
 * previous call settled (two at most), so the next batch's entities need not wait for the
 * slowest entity of the previous one. The handler then keeps each entity's order across the two
 * and fails the later call's events of an entity whose events failed in the earlier one. Offsets
 * still move in order: the later batch counts only after the earlier one was wholly accepted.
 */
export interface ReadSideHandlerPort {
  handleReadSide(request: HandleReadSideRequest, call?: ReadSideCallOptions): Promise<HandleReadSideResponse>;
  handleBatch?(events: readonly JournalEventRecord[], call: BatchCallOptions): Promise<void>;
  readonly overlapBatches?: boolean;
}

/** LISTEN on a channel; resolves once listening, with the unsubscribe function. */
export type ListenPort = (channel: string, listener: (payload: string) => void) => Promise<() => Promise<void>>;

export type ReleaseReason = 'rebalanced' | 'closing' | 'lost';

export interface StreamHostPort {
  acquired(stream: string): void;
  released(stream: string, reason: ReleaseReason): Promise<void>;
}

/** Who runs which stream when several processes share the database. */
export interface OwnershipPort {
  start(streams: readonly string[], host: StreamHostPort): Promise<void>;
  close(): Promise<void>;
}


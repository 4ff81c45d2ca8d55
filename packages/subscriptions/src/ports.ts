/*
 * The narrow interfaces subscriptions need. The real packages satisfy them structurally:
 * @chiefofstate/journal's Journal and @chiefofstate/postgres's Database (LISTEN / NOTIFY).
 */

/** One journal row as subscriptions read it. */
export interface JournalEventRecord {
  /** the global position: unique, increasing in commit order across the whole journal */
  readonly position: bigint;
  readonly entityId: string;
  readonly revision: bigint;
  readonly writtenAt: Date;
  /** a serialized chief_of_state.v1.EventWrapper */
  readonly payload: Uint8Array;
}

export interface SubscriptionJournal {
  /**
   * Every event with position > afterPosition, ascending, deleted ones included. Must never
   * skip: an event that becomes visible later has a higher position than every event visible now.
   */
  readAll(options: { afterPosition: bigint; limit: number }): Promise<readonly JournalEventRecord[]>;
  /** The entity's events with revision >= fromRevision, ascending. */
  readEntity(
    entityId: string,
    options: { fromRevision: bigint; limit?: number; includeDeleted?: boolean },
  ): Promise<readonly JournalEventRecord[]>;
  /** The entity's newest event, undefined when it has none. */
  readLatest(entityId: string): Promise<JournalEventRecord | undefined>;
  /** The highest position written, 0n when none. */
  latestPosition(): Promise<bigint>;
}

/** LISTEN on a channel; resolves once listening, with the unsubscribe function. */
export type ListenPort = (channel: string, listener: (payload: string) => void) => Promise<() => Promise<void>>;

/** NOTIFY on a channel (every process on the database hears it). */
export type NotifyPort = (channel: string, payload: string) => Promise<void>;

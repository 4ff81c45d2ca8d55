import type { EventTail } from './event-tail.js';
import type { JournalEventRecord, SubscriptionJournal } from './ports.js';

export interface CursorContext {
  readonly tail: EventTail;
  readonly journal: SubscriptionJournal;
  /** events per journal read: what one subscriber holds at most */
  readonly pageSize: number;
  /** ends the cursor (it returns) */
  readonly signal: AbortSignal;
  /** kept up to date by the cursor: where a new subscription would resume */
  readonly progress: CursorProgress;
}

export interface CursorProgress {
  /** all: the last position delivered (or the start); entity: the last revision delivered (or skipped) */
  last: bigint;
}

/** Where an event came from: the shared tail (caught up) or a journal read of its own (behind). */
export type EventSource = 'tail' | 'journal';

export interface CursorEvent {
  readonly event: JournalEventRecord;
  readonly source: EventSource;
}

/** kept events one entity cursor scans per step, looking for its entity's */
const ENTITY_SCAN = 4096;

/**
 * Every event with a position above `afterPosition` (undefined: where the journal ends now), in
 * position order, then every later one as it commits. Pull-based: the next page is read only when the consumer has taken the last one,
 * so a slow consumer holds one page, and once it falls behind the shared tail it reads the
 * journal itself until it catches up. One position cursor for history and live alike: there is
 * no hand-over where an event could be lost or repeated.
 */
export async function* allEvents(context: CursorContext, afterPosition: bigint | undefined): AsyncGenerator<CursorEvent> {
  const { tail, journal, pageSize, signal, progress } = context;
  // the journal's end, not the tail's, which may not have read the latest commits yet
  let position = afterPosition ?? (await journal.latestPosition());
  progress.last = position;
  while (!signal.aborted) {
    const version = tail.version();
    const kept = tail.after(position, pageSize);
    const source: EventSource = kept ? 'tail' : 'journal';
    const page = kept ?? (await journal.readAll({ afterPosition: position, limit: pageSize }));
    if (page.length === 0) {
      await tail.changed(version, signal);
      continue;
    }
    for (const event of page) {
      if (signal.aborted) return;
      yield { event, source };
      progress.last = position = event.position;
    }
  }
}

/**
 * The entity's events from revision `fromRevision` on, in revision order, then every later one as
 * it commits; `undefined`: only those committed after the call. Behind, it reads the entity's
 * events from the journal by revision (its revisions have no holes); caught up, it follows the
 * shared tail from a global position up to which it has every event of the entity.
 */
export async function* entityEvents(
  context: CursorContext,
  entityId: string,
  fromRevision: bigint | undefined,
): AsyncGenerator<CursorEvent> {
  const { tail, journal, pageSize, signal, progress } = context;
  /** the last revision delivered (or skipped, for a live-only start) */
  let revision: bigint;
  /** every event of the entity up to this global position was delivered; undefined: unknown */
  let position: bigint | undefined;
  if (fromRevision === undefined) {
    const seen = tail.position();
    const latest = await journal.readLatest(entityId);
    revision = latest?.revision ?? 0n;
    position = latest && latest.position > seen ? latest.position : seen;
  } else {
    revision = fromRevision > 0n ? fromRevision - 1n : 0n;
  }
  progress.last = revision;
  while (!signal.aborted) {
    const version = tail.version();
    const kept = position === undefined ? undefined : tail.after(position, ENTITY_SCAN);
    if (kept !== undefined) {
      if (kept.length === 0) {
        await tail.changed(version, signal);
        continue;
      }
      for (const event of kept) {
        if (signal.aborted) return;
        if (event.entityId === entityId && event.revision > revision) {
          yield { event, source: 'tail' };
          progress.last = revision = event.revision;
        }
        position = event.position;
      }
      continue;
    }
    // everything up to `seen` is visible, so a short read means the entity has nothing more up to it
    const seen = tail.position();
    const page = await journal.readEntity(entityId, { fromRevision: revision + 1n, limit: pageSize, includeDeleted: true });
    for (const event of page) {
      if (signal.aborted) return;
      yield { event, source: 'journal' };
      progress.last = revision = event.revision;
    }
    const last = page.at(-1)?.position;
    position = page.length < pageSize ? (last !== undefined && last > seen ? last : seen) : undefined;
  }
}

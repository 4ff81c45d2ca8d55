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
 * Every event with a position above `afterPosition`, in position order, then every later one as
 * it commits. Pull-based: the next page is read only when the consumer has taken the last one,
 * so a slow consumer holds one page, and once it falls behind the shared tail it reads the
 * journal itself until it catches up. One position cursor for history and live alike: there is
 * no hand-over where an event could be lost or repeated.
 */
export async function* allEvents(context: CursorContext, afterPosition: bigint): AsyncGenerator<CursorEvent> {
  const { tail, journal, pageSize, signal, progress } = context;
  let position = afterPosition;
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

/** Where an entity cursor starts: after `revision`, with every event of the entity up to `position` (when known) delivered. */
export interface EntityStart {
  readonly revision: bigint;
  readonly position?: bigint;
}

/**
 * The start of an entity cursor: before `fromRevision`, or (undefined) after the entity's latest
 * event now, so that only events committed after this call are sent.
 */
export async function entityStart(
  tail: EventTail,
  journal: SubscriptionJournal,
  entityId: string,
  fromRevision: bigint | undefined,
): Promise<EntityStart> {
  if (fromRevision !== undefined) return { revision: fromRevision > 0n ? fromRevision - 1n : 0n };
  // every event up to `seen` is visible, so the latest read now is the latest up to it at least
  const seen = tail.position();
  const latest = await journal.readLatest(entityId);
  return { revision: latest?.revision ?? 0n, position: latest && latest.position > seen ? latest.position : seen };
}

/**
 * The entity's events after `start.revision`, in revision order, then every later one as it
 * commits. Behind, it reads the entity's events from the journal by revision (its revisions have
 * no holes); caught up, it follows the shared tail from a global position up to which it has
 * every event of the entity.
 */
export async function* entityEvents(context: CursorContext, entityId: string, start: EntityStart): AsyncGenerator<CursorEvent> {
  const { tail, journal, pageSize, signal, progress } = context;
  /** the last revision delivered (or skipped, for a live-only start) */
  let revision = start.revision;
  /** every event of the entity up to this global position was delivered; undefined: unknown */
  let position = start.position;
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

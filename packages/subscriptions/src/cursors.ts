import type { EventTail } from './event-tail.js';
import type { JournalEventRecord, SubscriptionJournal } from './ports.js';

export interface CursorContext {
  readonly tail: EventTail;
  readonly journal: SubscriptionJournal;
  /** events per journal read: what one subscriber holds at most */
  readonly pageSize: number;
  /** ends the cursor (it returns) */
  readonly signal: AbortSignal;
}

/** Where an event came from: the shared tail (caught up) or a journal read of its own (behind). */
export type EventSource = 'tail' | 'journal';

/** Events a cursor hands over at once: in order, never empty. */
export interface CursorPage {
  readonly events: readonly JournalEventRecord[];
  readonly source: EventSource;
}

/** kept events one entity cursor scans per step, looking for its entity's */
const ENTITY_SCAN = 4096;

/**
 * Every event with a position above `afterPosition`, in position order, then every later one as
 * it commits, a page at a time. Pull-based: the next page is read only when the consumer has
 * taken the last one, so a slow consumer holds one page, and once it falls behind the shared
 * tail it reads the journal itself until it catches up. One position cursor for history and live
 * alike: there is no hand-over where an event could be lost or repeated.
 */
export async function* allEvents(context: CursorContext, afterPosition: bigint): AsyncGenerator<CursorPage> {
  const { tail, journal, pageSize, signal } = context;
  let position = afterPosition;
  while (!signal.aborted) {
    const version = tail.version();
    const kept = tail.after(position, pageSize);
    const source: EventSource = kept ? 'tail' : 'journal';
    const events = kept ?? (await journal.readAll({ afterPosition: position, limit: pageSize }));
    if (events.length === 0) {
      await tail.changed(version, signal);
      continue;
    }
    if (signal.aborted) return;
    yield { events, source };
    position = events.at(-1)!.position;
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
 * commits, a page at a time. Behind, it reads the entity's events from the journal by revision
 * (its revisions have no holes); caught up, it follows the shared tail from a global position up
 * to which it has every event of the entity.
 */
export async function* entityEvents(context: CursorContext, entityId: string, start: EntityStart): AsyncGenerator<CursorPage> {
  const { tail, journal, pageSize, signal } = context;
  /** the last revision delivered (or skipped, for a live-only start) */
  let revision = start.revision;
  /** every event of the entity up to this global position was delivered; undefined: unknown */
  let position = start.position;
  while (!signal.aborted) {
    const version = tail.version();
    const kept = position === undefined ? undefined : tail.after(position, ENTITY_SCAN);
    if (kept !== undefined) {
      if (kept.length === 0) {
        await tail.changed(version, signal);
        continue;
      }
      const events = ofEntity(kept, entityId, revision);
      if (events.length > 0) {
        if (signal.aborted) return;
        yield { events, source: 'tail' };
        revision = events.at(-1)!.revision;
      }
      position = kept.at(-1)!.position;
      continue;
    }
    // everything up to `seen` is visible, so a short read means the entity has nothing more up to it
    const seen = tail.position();
    const events = await journal.readEntity(entityId, { fromRevision: revision + 1n, limit: pageSize, includeDeleted: true });
    if (events.length > 0) {
      if (signal.aborted) return;
      yield { events, source: 'journal' };
      revision = events.at(-1)!.revision;
    }
    const last = events.at(-1)?.position;
    position = events.length < pageSize ? (last !== undefined && last > seen ? last : seen) : undefined;
  }
}

const NONE: readonly JournalEventRecord[] = [];

/** The kept events of the entity after `revision` (most scans find none: no array made then). */
function ofEntity(kept: readonly JournalEventRecord[], entityId: string, revision: bigint): readonly JournalEventRecord[] {
  let found: JournalEventRecord[] | undefined;
  for (const event of kept) {
    if (event.entityId === entityId && event.revision > revision) (found ??= []).push(event);
  }
  return found ?? NONE;
}

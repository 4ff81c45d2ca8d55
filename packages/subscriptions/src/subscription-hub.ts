import { randomUUID } from 'node:crypto';
import { InvalidArgumentError, OverloadedError, ShuttingDownError, StoreError, assertValidEntityId, type Logger } from '@chiefofstate/core';
import { allEvents, entityEvents, entityStart, type CursorPage, type EventSource } from './cursors.js';
import { createEventTail, type EventTail } from './event-tail.js';
import type { JournalEventRecord, ListenPort, NotifyPort, SubscriptionJournal } from './ports.js';

/** NOTIFY channel of Unsubscribe: every process ends its subscriptions with that id */
export const SUBSCRIPTION_CONTROL_CHANNEL = 'cos_subscription_control';

/** longest subscription id, in UTF-8 bytes (it travels as a NOTIFY payload, at most 8000 bytes) */
const MAX_ID_BYTES = 256;

function assertValidSubscriptionId(id: string | undefined): void {
  if (id !== undefined && Buffer.byteLength(id) > MAX_ID_BYTES) {
    throw new InvalidArgumentError(`subscription_id is longer than ${MAX_ID_BYTES} bytes`);
  }
}

export type SubscriptionKind = 'entity' | 'all';

export interface SubscriptionHubOptions {
  readonly journal: SubscriptionJournal;
  /** LISTEN, for the journal's NOTIFY and for Unsubscribe from other processes */
  readonly listen?: ListenPort;
  /** NOTIFY, so an Unsubscribe reaches the process that serves the subscription */
  readonly notify?: NotifyPort;
  /** the journal's NOTIFY channel (JOURNAL_NOTIFY_CHANNEL) */
  readonly journalChannel: string;
  /** most subscriptions open at once (COS_SUBSCRIPTION_MAX_ACTIVE); beyond, OverloadedError */
  readonly maxActive?: number;
  /** events per journal read, what one subscriber holds at most; default 100 */
  readonly pageSize?: number;
  /** newest events kept for caught-up subscribers; default 4096 */
  readonly tailCapacity?: number;
  /** most payload bytes the tail keeps; default 16 MiB */
  readonly tailMaxBytes?: number;
  /** reads without a notification this often while subscriptions are open; default 1000 ms */
  readonly pollIntervalMs?: number;
  /** one event sent to a subscriber: where it was read, and how long after it was written */
  readonly onEvent?: (kind: SubscriptionKind, source: EventSource, lagSeconds: number) => void;
  readonly logger?: Logger;
}

/** One event as a subscriber receives it. */
export interface SubscribedEvent {
  readonly subscriptionId: string;
  /** the global journal position */
  readonly position: bigint;
  readonly entityId: string;
  readonly revision: bigint;
  /**
   * the serialized EventWrapper as stored: for an event from the shared tail, the same object for
   * every subscriber (the edge encodes each event's response once for all of them)
   */
  readonly payload: Uint8Array;
}

export interface Subscription {
  readonly id: string;
  /**
   * The events, a page at a time (in order, never empty; the tail's pages are shared by every
   * subscriber that reads them). Take either `batches` or `events`, not both. Ends normally on
   * Unsubscribe (or the caller's signal); throws ShuttingDownError when the process stops and
   * StoreError when the journal cannot be read, both naming where to resume.
   */
  readonly batches: AsyncIterable<readonly JournalEventRecord[]>;
  /** The same events one by one, with the subscription id. */
  readonly events: AsyncIterable<SubscribedEvent>;
}

export interface SubscribeOptions {
  readonly entityId: string;
  /** empty or absent: a generated one */
  readonly subscriptionId?: string;
  /** catch-up from this revision; absent: live only */
  readonly fromRevision?: bigint;
  /** the call's: ends the subscription when aborted */
  readonly signal: AbortSignal;
}

export interface SubscribeAllOptions {
  readonly subscriptionId?: string;
  /** catch-up after this global position; absent: live only */
  readonly afterPosition?: bigint;
  readonly signal: AbortSignal;
}

export interface SubscriptionHub {
  /** Reads where the journal ends and listens; before any subscription. */
  start(): Promise<void>;
  /**
   * Resolves once the start is fixed: a live-only subscription gets every event committed after
   * that, and none before.
   */
  subscribe(options: SubscribeOptions): Promise<Subscription>;
  subscribeAll(options: SubscribeAllOptions): Promise<Subscription>;
  /** Ends the subscriptions with that id, here and (through NOTIFY) in every other process. */
  unsubscribe(subscriptionId: string): Promise<void>;
  /** open subscriptions by kind, and what the shared tail holds */
  stats(): { readonly entity: number; readonly all: number; readonly tailEvents: number; readonly tailBytes: number };
  /** Ends every subscription (ShuttingDownError with its resume position) and stops reading. */
  close(): Promise<void>;
}

interface Active {
  readonly kind: SubscriptionKind;
  readonly controller: AbortController;
}

/**
 * The subscriptions of one process: a shared tail of the journal woken by its NOTIFY, and one
 * cursor per subscription over the journal's global order (see cursors.ts). A subscriber on any
 * process sees every event, whoever wrote it: cursors read the journal table, and NOTIFY
 * reaches every process on the database.
 */
export function createSubscriptionHub(options: SubscriptionHubOptions): SubscriptionHub {
  const { journal } = options;
  const pageSize = options.pageSize ?? 100;
  const maxActive = options.maxActive ?? 1000;
  const active = new Map<string, Set<Active>>();
  let count = 0;
  const counts: Record<SubscriptionKind, number> = { entity: 0, all: 0 };
  let closing = false;
  let unlistenControl: (() => Promise<void>) | undefined;
  const tail: EventTail = createEventTail({
    journal,
    ...(options.listen ? { listen: options.listen } : {}),
    channel: options.journalChannel,
    capacity: options.tailCapacity ?? 4096,
    maxBytes: options.tailMaxBytes ?? 16 * 1024 * 1024,
    pageSize: 1000,
    pollIntervalMs: options.pollIntervalMs ?? 1000,
    active: () => count > 0,
    ...(options.logger ? { logger: options.logger } : {}),
  });
  const endLocal = (subscriptionId: string): void => {
    for (const entry of active.get(subscriptionId) ?? []) entry.controller.abort('unsubscribed');
  };

  const refuseWhenFull = () => {
    if (closing) throw new ShuttingDownError('chief-of-state is stopping; subscribe to another replica');
    if (count >= maxActive) throw new OverloadedError(`too many subscriptions open on this replica (${maxActive}); retry later`);
  };

  const open = (
    kind: SubscriptionKind,
    requestedId: string | undefined,
    signal: AbortSignal,
    cursor: (signal: AbortSignal) => AsyncGenerator<CursorPage>,
    resumeHint: (last: bigint) => string,
    initial: bigint,
  ): Subscription => {
    refuseWhenFull();
    assertValidSubscriptionId(requestedId);
    const id = requestedId === undefined || requestedId === '' ? randomUUID() : requestedId;
    const controller = new AbortController();
    const entry: Active = { kind, controller };
    let set = active.get(id);
    if (!set) active.set(id, (set = new Set()));
    set.add(entry);
    count++;
    counts[kind]++;
    // the tail does not read while nobody subscribes: catch it up
    if (count === 1) tail.poke();
    const onAbort = () => controller.abort('cancelled');
    signal.addEventListener('abort', onAbort, { once: true });
    if (signal.aborted) controller.abort('cancelled');
    const release = () => {
      signal.removeEventListener('abort', onAbort);
      if (set.delete(entry)) {
        count--;
        counts[kind]--;
      }
      if (set.size === 0 && active.get(id) === set) active.delete(id);
    };
    /** all: the last position taken (or the start); entity: the last revision taken (or skipped) */
    let last = initial;
    const mark = kind === 'all' ? (event: JournalEventRecord) => event.position : (event: JournalEventRecord) => event.revision;

    /** `byPage`: a page is taken once the next one is asked for; else the events reader marks each one */
    async function* batches(byPage: boolean): AsyncGenerator<readonly JournalEventRecord[]> {
      try {
        for await (const page of cursor(controller.signal)) {
          if (options.onEvent) {
            const now = Date.now();
            for (const event of page.events) options.onEvent(kind, page.source, Math.max(0, (now - event.writtenAt.getTime()) / 1000));
          }
          yield page.events;
          if (byPage) last = mark(page.events.at(-1)!);
        }
        if (controller.signal.reason === 'closing') {
          throw new ShuttingDownError(`chief-of-state is stopping; ${resumeHint(last)}`);
        }
      } catch (error) {
        if (error instanceof StoreError) {
          throw new StoreError(error.message, { cause: error, publicMessage: `the event store is unavailable; ${resumeHint(last)}` });
        }
        throw error;
      } finally {
        release();
      }
    }

    // One by one: a page taken part way resumes after the last event taken, and an Unsubscribe
    // ends the stream before the rest of its page.
    async function* events(pages: AsyncGenerator<readonly JournalEventRecord[]>): AsyncGenerator<SubscribedEvent> {
      for await (const page of pages) {
        for (const event of page) {
          if (controller.signal.aborted) break;
          yield { subscriptionId: id, position: event.position, entityId: event.entityId, revision: event.revision, payload: event.payload };
          last = mark(event);
        }
      }
    }

    let taken: AsyncGenerator<readonly JournalEventRecord[]> | undefined;
    const take = (byPage: boolean) => {
      if (taken) throw new Error('a subscription is read once: take its batches or its events');
      return (taken = batches(byPage));
    };
    return {
      id,
      get batches() {
        return take(true);
      },
      get events() {
        return events(take(false));
      },
    };
  };

  return {
    async start() {
      await tail.start();
      if (options.listen) unlistenControl = await options.listen(SUBSCRIPTION_CONTROL_CHANNEL, endLocal);
    },

    async subscribe({ entityId, subscriptionId, fromRevision, signal }) {
      assertValidEntityId(entityId);
      refuseWhenFull();
      const start = await entityStart(tail, journal, entityId, fromRevision);
      return open(
        'entity',
        subscriptionId,
        signal,
        (cursorSignal) => entityEvents({ tail, journal, pageSize, signal: cursorSignal }, entityId, start),
        (last) => `resume with from_revision=${last + 1n}`,
        start.revision,
      );
    },

    async subscribeAll({ subscriptionId, afterPosition, signal }) {
      refuseWhenFull();
      // live only: after the journal's end now (the tail may not have read the latest commits)
      const start = afterPosition ?? (await journal.latestPosition());
      return open(
        'all',
        subscriptionId,
        signal,
        (cursorSignal) => allEvents({ tail, journal, pageSize, signal: cursorSignal }, start),
        (last) => `resume with after_offset=${last}`,
        start,
      );
    },

    async unsubscribe(subscriptionId) {
      assertValidSubscriptionId(subscriptionId);
      endLocal(subscriptionId);
      await options.notify?.(SUBSCRIPTION_CONTROL_CHANNEL, subscriptionId);
    },

    stats() {
      const held = tail.stats();
      return { entity: counts.entity, all: counts.all, tailEvents: held.events, tailBytes: held.bytes };
    },

    async close() {
      closing = true;
      for (const set of active.values()) for (const entry of set) entry.controller.abort('closing');
      await unlistenControl?.().catch(() => {});
      await tail.close();
    },
  };
}

import type { Logger } from '@chiefofstate/core';
import type { JournalEventRecord, ListenPort, SubscriptionJournal } from './ports.js';

export interface EventTailOptions {
  readonly journal: Pick<SubscriptionJournal, 'readAll' | 'latestPosition'>;
  /** LISTEN for the journal's NOTIFY; without it the tail only polls */
  readonly listen?: ListenPort;
  readonly channel: string;
  /** most events kept in memory */
  readonly capacity: number;
  /** most payload bytes kept in memory */
  readonly maxBytes: number;
  /** events per journal read */
  readonly pageSize: number;
  /** how often it reads without a notification, while `active()` (notifications can be lost) */
  readonly pollIntervalMs: number;
  readonly active: () => boolean;
  readonly logger?: Logger;
}

/**
 * The newest events of the journal, shared by every subscriber of the process: one reader
 * follows the journal's global position, woken by its NOTIFY (polling covers lost
 * notifications), and keeps the last `capacity` events (at most `maxBytes`). Subscribers that
 * are caught up read from here; one that fell behind what is kept reads the journal itself.
 *
 * The window is exact: it holds every event with a position in (`from`, `position()`], because
 * it reads "after the last position read" and the journal's positions are its commit order (an
 * event committing later always has a higher position than every event visible now).
 */
export interface EventTail {
  /** Reads where the journal ends now, and listens. */
  start(): Promise<void>;
  /** every event with a position up to this one has been read */
  position(): bigint;
  /** changes whenever events were added; pass it to `changed` */
  version(): number;
  /**
   * Up to `max` kept events with position > `position`, ascending; undefined when events right
   * after `position` are no longer kept (read them from the journal).
   */
  after(position: bigint, max: number): readonly JournalEventRecord[] | undefined;
  /** Resolves once the version differs from `since`, or the signal is aborted. */
  changed(since: number, signal: AbortSignal): Promise<void>;
  /**
   * Reads the journal now (a notification, a new subscriber, or a test). While `active()` is
   * false it only notes that the journal moved: with no subscriber, nothing is read, and the next
   * read starts from the journal's end then (the window is emptied; cursors behind it read the
   * journal themselves).
   */
  poke(): void;
  stats(): { readonly events: number; readonly bytes: number };
  close(): Promise<void>;
}

/** pages one read round takes at most before it yields to the event loop */
const MAX_PAGES_PER_ROUND = 64;

export function createEventTail(options: EventTailOptions): EventTail {
  const { journal, capacity, maxBytes, pageSize } = options;
  let entries: JournalEventRecord[] = [];
  let head = 0;
  let bytes = 0;
  let from = 0n;
  let to = 0n;
  let version = 0;
  let waiters = new Set<() => void>();
  let reading = false;
  let again = false;
  /** commits were notified while nobody subscribed: the window is behind the journal's end */
  let stale = false;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let unlisten: (() => Promise<void>) | undefined;

  const wake = () => {
    version++;
    const woken = waiters;
    waiters = new Set();
    for (const resolve of woken) resolve();
  };

  const keep = (rows: readonly JournalEventRecord[]) => {
    for (const row of rows) {
      entries.push(row);
      bytes += row.payload.byteLength;
    }
    to = rows.at(-1)!.position;
    while (entries.length - head > 1 && (entries.length - head > capacity || bytes > maxBytes)) {
      const dropped = entries[head++]!;
      bytes -= dropped.payload.byteLength;
      from = dropped.position;
    }
    if (head > 1024 && head * 2 > entries.length) {
      entries = entries.slice(head);
      head = 0;
    }
  };

  const readRound = async () => {
    for (let page = 0; page < MAX_PAGES_PER_ROUND && !closed; page++) {
      const rows = await journal.readAll({ afterPosition: to, limit: pageSize });
      if (rows.length > 0) {
        keep(rows);
        wake();
      }
      if (rows.length < pageSize) return;
    }
    again = true;
  };

  /** Without subscribers the tail does not read; the first one after that finds it moved to the journal's end. */
  const skipAhead = async () => {
    stale = false;
    const end = await journal.latestPosition();
    if (end <= to) return;
    entries = [];
    head = 0;
    bytes = 0;
    from = to = end;
    wake();
  };

  const poke = () => {
    if (closed) return;
    if (!options.active()) {
      stale = true;
      return;
    }
    if (reading) {
      again = true;
      return;
    }
    reading = true;
    void (async () => {
      try {
        do {
          again = false;
          if (stale) await skipAhead();
          await readRound();
          // yield between rounds, so a long backlog cannot hold the event loop
          if (again) await new Promise((resolve) => setImmediate(resolve));
        } while (again && !closed);
      } catch (error) {
        // the next notification or poll tries again; subscribers wait meanwhile
        options.logger?.warn({ err: error }, 'subscriptions: reading the journal failed');
      } finally {
        reading = false;
      }
    })();
  };

  /** the index of the first kept event with position > `position` (binary search) */
  const firstAfter = (position: bigint): number => {
    let low = head;
    let high = entries.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (entries[middle]!.position <= position) low = middle + 1;
      else high = middle;
    }
    return low;
  };

  return {
    async start() {
      from = to = await journal.latestPosition();
      if (options.listen) unlisten = await options.listen(options.channel, poke);
      timer = setInterval(() => {
        if (options.active()) poke();
      }, options.pollIntervalMs);
      timer.unref();
    },
    position: () => to,
    version: () => version,
    after(position, max) {
      if (position < from) return undefined;
      const start = firstAfter(position);
      return entries.slice(start, Math.min(entries.length, start + max));
    },
    changed(since, signal) {
      if (since !== version || signal.aborted || closed) return Promise.resolve();
      return new Promise<void>((resolve) => {
        const done = () => {
          waiters.delete(done);
          signal.removeEventListener('abort', done);
          resolve();
        };
        waiters.add(done);
        signal.addEventListener('abort', done, { once: true });
      });
    },
    poke,
    stats: () => ({ events: entries.length - head, bytes }),
    async close() {
      closed = true;
      clearInterval(timer);
      wake();
      await unlisten?.().catch(() => {});
    },
  };
}

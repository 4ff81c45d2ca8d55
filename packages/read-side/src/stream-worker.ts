import type { Logger } from '@chiefofstate/core';
import { backoffMs, type FailurePolicy, type RetryOptions } from './failure-policy.js';
import type { JournalEventRecord, JournalReader, OffsetPort, ReadSideHandlerPort, ReleaseReason } from './ports.js';
import { flush, scheduleCommit } from './stream-commits.js';
import { deliver, deliverBatch } from './stream-delivery.js';
import { createStreamState, interrupted, poke, sleep, type StreamState } from './stream-state.js';

/** Progress and counters of one (read side, shard) stream, kept across changes of ownership. */
export interface StreamStats {
  /** this process runs the stream now */
  owned: boolean;
  /** the committed offset, as last seen by this process */
  position: bigint;
  paused: boolean;
  /** stopped by the failure policy; lifted by resume, restart, skip, or a new owner */
  stopped: boolean;
  lastError: string | undefined;
  lastErrorAt: Date | undefined;
  /** events the handler accepted */
  delivered: number;
  /** failed attempts (successful=false, errors, timeouts) */
  failures: number;
  /** events skipped by the failure policy */
  skipped: number;
  /** times the failure policy stopped the stream */
  stops: number;
}

export interface StreamWorkerOptions {
  readonly readSideId: string;
  readonly shard: number;
  readonly handler: ReadSideHandlerPort;
  readonly timeoutMs: number;
  readonly failurePolicy: FailurePolicy;
  readonly journal: JournalReader;
  readonly offsets: OffsetPort;
  readonly logger: Logger;
  readonly batchSize: number;
  readonly pollIntervalMs: number;
  readonly retry: RetryOptions;
  /** least time between two commits while events keep coming; 0 commits as fast as round trips allow */
  readonly commitIntervalMs: number;
  readonly stats: StreamStats;
  /** each attempt's duration and outcome, for metrics */
  readonly onDelivery?: ((readSideId: string, seconds: number, outcome: DeliveryOutcome) => void) | undefined;
}

/** What the manager did to a stream's stored offset or pause flag. */
export type ControlAction = 'pause' | 'resume' | 'restart' | 'skip';

/** How one delivery attempt ended: accepted, failed (retried or stopping the shard), or failed and skipped. */
export type DeliveryOutcome = 'success' | 'failure' | 'skipped';

export interface StreamWorker {
  /** New events may be in the journal. */
  wake(): void;
  /**
   * The stored offset or pause flag changed (pause, resume, restart, skip): re-read them after
   * the event in hand. Resume, restart and skip also lift a stop of the failure policy.
   */
  control(action: ControlAction): void;
  /**
   * Stops: 'rebalanced' and 'closing' let the event in hand finish and commit what was
   * delivered; 'lost' commits nothing more (a call in flight is left to end). Resolves when done.
   */
  stop(reason: ReleaseReason): Promise<void>;
}

/**
 * One ordered stream: reads the shard after the committed offset in batches, calls the handler
 * for each event in position order (which is per-entity revision order), and commits offsets.
 * A handler with handleBatch (a publisher) gets each read batch at once instead.
 *
 * Commits are pipelined: the commit of what was delivered runs while the next events are
 * delivered, one commit in flight at a time, each covering every event delivered so far. They
 * are compare-and-set (expected = the last committed value), so an offset moved by someone else
 * (restart, skip, another owner) is never overwritten: the worker re-reads it and goes on from
 * there. An event is committed only after it and every earlier event of the shard was delivered
 * or skipped by the policy, so a crash at any point re-delivers, never skips.
 *
 * Its parts share one StreamState (stream-state.ts): the rounds are here, the deliveries in
 * stream-delivery.ts, the commits in stream-commits.ts.
 */
export function startStreamWorker(options: StreamWorkerOptions): StreamWorker {
  const s = createStreamState(options);
  const { stats, logger } = options;
  const done = run(s).catch((error: unknown) => logger.error({ ...s.where, err: error }, 'read side stream crashed'));

  return {
    wake() {
      s.dirty = true;
      poke(s);
    },
    control(action) {
      if (action !== 'pause') stats.stopped = false;
      if (action === 'restart') {
        // what was delivered before the restart must not be committed after it
        s.restarted = true;
        s.moved = true;
      }
      s.recheck = true;
      poke(s);
    },
    stop(reason) {
      if (s.stopping === undefined || reason === 'lost') s.stopping = reason;
      poke(s);
      return done;
    },
  };
}

/** The stream's rounds until it stops: each reads a page after the cursor and delivers it. */
async function run(s: StreamState): Promise<void> {
  const { options } = s;
  let failedRounds = 0;
  while (s.stopping === undefined) {
    try {
      // The stored offset and pause flag are read at the start, after a control signal, after
      // a commit found the offset moved, and every pollIntervalMs (a signal from another
      // process may be lost); in between the stream goes on from what it delivered, so a
      // round costs one journal read.
      if (s.recheck || s.moved || s.restarted || performance.now() - s.rowReadAt >= options.pollIntervalMs) {
        await flush(s);
        if (s.stopping !== undefined) break;
        await readStoredOffset(s);
      }
      if (s.paused || options.stats.stopped) {
        await flush(s);
        // new events do not matter now; only a control signal or the poll does
        await sleep(s, options.pollIntervalMs, () => interrupted(s));
        continue;
      }
      s.dirty = false;
      const events = await nextPage(s);
      if (events.length === 0) {
        await flush(s); // idle: what was delivered is committed now
        await sleep(s, Math.max(0, s.rowReadAt + options.pollIntervalMs - performance.now()), () => s.dirty || interrupted(s));
        continue;
      }
      await deliverPage(s, events);
      failedRounds = 0;
    } catch (error) {
      // the database failed (reading or committing): retry the round with backoff
      failedRounds++;
      s.recheck = true;
      options.logger.warn({ ...s.where, err: error }, 'read side stream failed to read or commit; retrying');
      await sleep(s, backoffMs(failedRounds - 1, { initialBackoffMs: 200, maxBackoffMs: 5_000 }), () => s.stopping !== undefined);
    }
  }
  if (s.stopping !== 'lost') {
    await flush(s).catch((error: unknown) =>
      options.logger.warn({ ...s.where, err: error }, 'read side offset not committed at stop; the next owner re-delivers'),
    );
  }
}

/** With nothing of this worker's left to commit (flushed): where the stream is stored, and whether paused. */
async function readStoredOffset(s: StreamState): Promise<void> {
  const { readSideId, shard, offsets, stats } = s.options;
  // A restart resets the offset to 0. A commit of this worker in flight at that moment
  // may have landed after the reset, and a compare-and-set from an expected 0 cannot
  // tell (a replay not yet committed expects 0 too): so, with nothing in flight any more
  // (the flush before), the worker resets its shard once more. Harmless when not needed.
  if (s.restarted) {
    await offsets.reset(readSideId, shard);
    s.restarted = false;
  }
  s.recheck = false;
  const stored = await offsets.get(readSideId, shard);
  s.rowReadAt = performance.now();
  // after the flush the stored offset is what this worker delivered, unless someone
  // else moved it (restart, skip): an operator acted, so a stop is lifted too
  if (!s.moved && stored.position !== s.committed) stats.stopped = false;
  s.moved = false;
  s.committed = s.cursor = stored.position;
  stats.position = stored.position;
  stats.paused = s.paused = stored.paused;
}

/** The events after the cursor; a full page starts the read of the next one (read ahead). */
async function nextPage(s: StreamState): Promise<readonly JournalEventRecord[]> {
  const { journal, shard, batchSize } = s.options;
  // a page read ahead (after a full one) while the previous was delivered, if it follows on
  const events = await (s.ahead?.after === s.cursor ? s.ahead.page : journal.readShard({ shard, afterPosition: s.cursor, limit: batchSize }));
  s.ahead = undefined;
  readAheadAfter(s, events);
  return events;
}

/** After a full page, more is likely to follow: starts reading it. */
function readAheadAfter(s: StreamState, events: readonly JournalEventRecord[]): void {
  const { journal, shard, batchSize } = s.options;
  if (events.length < batchSize) return;
  const after = events.at(-1)!.position;
  const page = journal.readShard({ shard, afterPosition: after, limit: batchSize });
  page.catch(() => {}); // awaited, or dropped when the stream goes elsewhere
  s.ahead = { after, page };
}

/** Delivers a page (as a batch first, with handleBatch), moving the cursor and committing as it goes. */
async function deliverPage(s: StreamState, page: readonly JournalEventRecord[]): Promise<void> {
  const { handler } = s.options;
  let events = page;
  let from = 0;
  if (handler.handleBatch) {
    const outcome = await deliverBatches(s, page, handler.handleBatch);
    if (outcome === 'interrupted') return;
    ({ events, accepted: from } = outcome);
  }
  for (const event of events.slice(from)) {
    if (interrupted(s)) break;
    const outcome = await deliver(s, event);
    if (outcome !== 'next') break;
    s.cursor = event.position;
    scheduleCommit(s);
    // after a failed batch only its first event not accepted goes alone; then batches again
    if (handler.handleBatch) break;
  }
}

type BatchInHandler = { readonly events: readonly JournalEventRecord[]; readonly accepted: Promise<number | 'interrupted'> };

/**
 * A page as one batch; with a handler that overlaps batches, the pages read ahead follow, each
 * handed over while the one before it is still in the handler (two at most), so an entity with
 * many events in one batch does not hold up the next. The cursor moves over each batch in order,
 * a later one only after the earlier was wholly accepted. Returns the batch that was not (or the
 * last) with how many of its leading events were.
 */
async function deliverBatches(
  s: StreamState,
  page: readonly JournalEventRecord[],
  handleBatch: NonNullable<ReadSideHandlerPort['handleBatch']>,
): Promise<'interrupted' | { events: readonly JournalEventRecord[]; accepted: number }> {
  let current: BatchInHandler = { events: page, accepted: deliverBatch(s, page, handleBatch) };
  for (;;) {
    const next = s.options.handler.overlapBatches ? await handOverAhead(s, current.events, handleBatch) : undefined;
    const accepted = await current.accepted;
    if (accepted === 'interrupted') {
      await next?.accepted;
      return 'interrupted';
    }
    if (accepted > 0) {
      s.cursor = current.events[accepted - 1]!.position;
      scheduleCommit(s);
    }
    if (accepted < current.events.length || next === undefined) {
      if (next) {
        // handed over too soon: what it published counts for nothing (the same ids go again)
        await next.accepted;
        s.ahead = undefined;
      }
      return { events: current.events, accepted };
    }
    current = next;
  }
}

/**
 * The page read ahead after `events`, handed to the handler; none when the stream is to re-check,
 * pause or stop, or is due to read its stored offset again (the round does, every pollIntervalMs).
 */
async function handOverAhead(
  s: StreamState,
  events: readonly JournalEventRecord[],
  handleBatch: NonNullable<ReadSideHandlerPort['handleBatch']>,
): Promise<BatchInHandler | undefined> {
  const ahead = s.ahead;
  if (ahead === undefined || ahead.after !== events.at(-1)!.position || interrupted(s) || s.paused) return undefined;
  if (performance.now() - s.rowReadAt >= s.options.pollIntervalMs) return undefined;
  let page: readonly JournalEventRecord[];
  try {
    page = await ahead.page;
  } catch {
    s.ahead = undefined; // the round reads it again after the cursor
    return undefined;
  }
  if (page.length === 0 || interrupted(s) || s.ahead !== ahead) return undefined;
  s.ahead = undefined;
  readAheadAfter(s, page);
  return { events: page, accepted: deliverBatch(s, page, handleBatch) };
}

import { ROOT_CONTEXT, SpanStatusCode, trace } from '@opentelemetry/api';
import { CircuitOpenError, publicMessageOf, traceLogFields } from '@chiefofstate/core';
import type { HandleReadSideRequest } from '@chiefofstate/protocol';
import { entityIdHeader, toReadSideRequest } from './delivery-request.js';
import { backoffMs, decideOnFailure, type FailurePolicy, type RetryOptions } from './failure-policy.js';
import type { JournalEventRecord, JournalReader, Logger, OffsetPort, ReadSideHandlerPort, ReleaseReason } from './ports.js';

const tracer = trace.getTracer('chiefofstate');

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

type Outcome = 'next' | 'stopped' | 'interrupted';

/** while a breaker's trial call is in flight, how often the other shards ask again */
const BREAKER_POLL_MS = 100;
/** the longest wait for an open breaker before asking again */
const MAX_BREAKER_WAIT_MS = 60_000;

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
 */
export function startStreamWorker(options: StreamWorkerOptions): StreamWorker {
  const { readSideId, shard, handler, journal, offsets, logger, stats } = options;
  const where = { readSideId, shard };

  let committed = 0n; // what this worker knows is stored
  let cursor = 0n; // the last event delivered (or skipped by the policy)
  let dirty = true; // new events may be in the journal
  let recheck = true; // re-read the stored offset and pause flag
  let moved = false; // a commit found the offset moved elsewhere: stop committing until re-read
  let restarted = false; // a restart was signalled: re-apply it once no commit of this worker is in flight
  let stopping: ReleaseReason | undefined;
  let committing: Promise<void> | undefined;
  let commitFailure: unknown;

  let waiter: (() => void) | undefined;
  const poke = () => waiter?.();
  /** Sleeps `ms`, or less when `interrupt()` becomes true (checked whenever the worker is poked). */
  const sleep = (ms: number, interrupt: () => boolean) =>
    new Promise<void>((resolve) => {
      if (interrupt()) return resolve();
      const finish = () => {
        clearTimeout(timer);
        waiter = undefined;
        resolve();
      };
      const timer = setTimeout(finish, ms);
      waiter = () => {
        if (interrupt()) finish();
      };
    });

  // While a stream delivers, commits are spaced by commitIntervalMs (each covering everything
  // delivered meanwhile), so a fast catch-up costs a few commits per second per stream instead
  // of one per event; a flush (end of a batch, idle, stop) commits at once.
  let lastCommitAt = Number.NEGATIVE_INFINITY;
  let urgent = false;
  let commitWaiter: (() => void) | undefined;
  const commitLoop = async () => {
    while (committed < cursor && !moved) {
      const wait = lastCommitAt + options.commitIntervalMs - performance.now();
      if (wait > 0 && !urgent) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            commitWaiter = undefined;
            resolve();
          }, wait);
          commitWaiter = () => {
            clearTimeout(timer);
            commitWaiter = undefined;
            resolve();
          };
        });
        continue;
      }
      lastCommitAt = performance.now();
      const target = cursor;
      try {
        if (await offsets.commitIf(readSideId, shard, committed, target)) {
          committed = target;
          stats.position = target;
        } else {
          logger.info('read side offset moved elsewhere; continuing from the stored one', { ...where, expected: String(committed) });
          moved = true;
          recheck = true;
        }
      } catch (error) {
        commitFailure = error;
        return;
      }
    }
  };
  const scheduleCommit = () => {
    committing ??= commitLoop().finally(() => (committing = undefined));
  };
  /** Waits until everything delivered is committed (or found moved); throws a database failure. */
  const flush = async () => {
    urgent = true;
    commitWaiter?.();
    try {
      await flushNow();
    } finally {
      urgent = false;
    }
  };
  const flushNow = async () => {
    for (;;) {
      if (committing) await committing;
      if (commitFailure !== undefined) {
        const error = commitFailure;
        commitFailure = undefined;
        throw error;
      }
      if (committed >= cursor || moved) return;
      scheduleCommit();
    }
  };

  const deliver = async (event: JournalEventRecord): Promise<Outcome> => {
    let request: HandleReadSideRequest | undefined;
    let decodeError: unknown;
    try {
      request = toReadSideRequest(event.payload, readSideId);
    } catch (error) {
      decodeError = error;
    }
    const headers = { 'x-cos-entity-id': entityIdHeader(event.entityId), 'x-cos-event-tag': String(shard) };
    for (let attempt = 0; ; attempt++) {
      let failure: unknown = decodeError;
      let traceIds: { trace_id?: string; span_id?: string } = {};
      const startedAt = performance.now();
      if (request) {
        // Each attempt is a trace of its own (deliveries happen apart from any caller); the
        // handler call's client span, and the handler's own spans, nest under it.
        const span = tracer.startSpan(
          'cos.read_side.deliver',
          {
            attributes: {
              'cos.read_side_id': readSideId,
              'cos.shard': shard,
              'cos.entity_id': event.entityId,
              'cos.position': Number(event.position),
              'cos.attempt': attempt + 1,
            },
          },
          ROOT_CONTEXT,
        );
        if (span.isRecording()) traceIds = traceLogFields(span);
        try {
          const response = await handler.handleReadSide(request, {
            headers,
            timeoutMs: options.timeoutMs,
            traceContext: trace.setSpan(ROOT_CONTEXT, span),
            record: event,
          });
          span.setAttribute('cos.read_side.successful', response.successful);
          if (!response.successful) span.setStatus({ code: SpanStatusCode.ERROR, message: 'successful=false' });
          span.end();
          if (stopping === 'lost') return 'interrupted';
          if (response.successful) {
            stats.delivered++;
            options.onDelivery?.(readSideId, (performance.now() - startedAt) / 1000, 'success');
            return 'next';
          }
          failure = new Error('the handler replied successful=false');
        } catch (error) {
          // the handler's own status message, or only what failed (its address stays in the log)
          span.setStatus({ code: SpanStatusCode.ERROR, message: publicMessageOf(error) });
          span.end();
          if (stopping === 'lost') return 'interrupted';
          failure = error;
        }
      }
      if (failure instanceof CircuitOpenError && !recheck && stopping === undefined) {
        // The read side's breaker is open: the handler is known down and nothing was sent. Wait
        // for its trial call instead of using up the failure policy's retries on refusals.
        logger.debug('read side circuit breaker open; waiting', { ...where, retryAfterMs: failure.retryAfterMs });
        await sleep(Math.min(Math.max(failure.retryAfterMs, BREAKER_POLL_MS), MAX_BREAKER_WAIT_MS), () => recheck || stopping !== undefined);
        if (recheck || stopping !== undefined) return 'interrupted';
        attempt--;
        continue;
      }
      stats.failures++;
      stats.lastError = failure instanceof Error ? failure.message : String(failure);
      stats.lastErrorAt = new Date();
      // A skip, restart, pause or resume arrived during the call: the stored offset decides what
      // comes next, not the policy (a skip of this very event must not end in a stop).
      if (recheck || stopping !== undefined) {
        options.onDelivery?.(readSideId, (performance.now() - startedAt) / 1000, 'failure');
        return 'interrupted';
      }
      const decision = decideOnFailure(options.failurePolicy, attempt, options.retry);
      options.onDelivery?.(readSideId, (performance.now() - startedAt) / 1000, decision === 'skip' ? 'skipped' : 'failure');
      const fields = {
        ...where,
        position: String(event.position),
        entityId: event.entityId,
        attempt: attempt + 1,
        policy: options.failurePolicy,
        err: failure,
        ...traceIds,
      };
      if (decision === 'skip') {
        stats.skipped++;
        logger.warn('read side handler failed; event skipped by the failure policy', fields);
        return 'next';
      }
      if (decision === 'stop') {
        stats.stopped = true;
        stats.stops++;
        logger.error('read side handler failed; shard stopped by the failure policy until resumed or restarted', fields);
        return 'stopped';
      }
      logger.warn('read side handler failed; retrying', fields);
      await sleep(backoffMs(attempt, options.retry), () => recheck || stopping !== undefined);
      if (recheck || stopping !== undefined) return 'interrupted';
    }
  };

  /**
   * A read batch at once (handlers with handleBatch: publishers): how many leading events were
   * accepted, or 'interrupted' when the stream was lost meanwhile.
   */
  const deliverBatch = async (
    events: readonly JournalEventRecord[],
    handleBatch: NonNullable<ReadSideHandlerPort['handleBatch']>,
  ): Promise<number | 'interrupted'> => {
    const startedAt = performance.now();
    const span = tracer.startSpan(
      'cos.read_side.deliver_batch',
      {
        attributes: {
          'cos.read_side_id': readSideId,
          'cos.shard': shard,
          'cos.position': Number(events[0]!.position),
          'cos.events': events.length,
        },
      },
      ROOT_CONTEXT,
    );
    let accepted = events.length;
    let failure: unknown;
    try {
      await handleBatch.call(handler, events, { timeoutMs: options.timeoutMs });
    } catch (error) {
      failure = error;
      accepted = acceptedOf(error, events.length);
      span.setStatus({ code: SpanStatusCode.ERROR, message: publicMessageOf(error) });
      span.setAttribute('cos.events_accepted', accepted);
    }
    span.end();
    if (stopping === 'lost') return 'interrupted';
    const seconds = (performance.now() - startedAt) / 1000;
    // the histogram counts events: each accepted one took the batch's time
    for (let i = 0; i < accepted; i++) options.onDelivery?.(readSideId, seconds, 'success');
    stats.delivered += accepted;
    if (failure !== undefined) {
      options.onDelivery?.(readSideId, seconds, 'failure');
      stats.failures++;
      stats.lastError = failure instanceof Error ? failure.message : String(failure);
      stats.lastErrorAt = new Date();
      logger.warn('read side batch failed; its first event not accepted goes on its own, under the failure policy', {
        ...where,
        position: String(events[accepted]!.position),
        accepted,
        events: events.length,
        err: failure,
        ...(span.isRecording() ? traceLogFields(span) : {}),
      });
    }
    return accepted;
  };

  /** the next page, read while this one is delivered (a full page: more is likely to follow) */
  let ahead: { readonly after: bigint; readonly page: Promise<readonly JournalEventRecord[]> } | undefined;
  let paused = false;
  let rowReadAt = Number.NEGATIVE_INFINITY;
  const run = async () => {
    let failedRounds = 0;
    while (stopping === undefined) {
      try {
        // The stored offset and pause flag are read at the start, after a control signal, after
        // a commit found the offset moved, and every pollIntervalMs (a signal from another
        // process may be lost); in between the stream goes on from what it delivered, so a
        // round costs one journal read.
        if (recheck || moved || restarted || performance.now() - rowReadAt >= options.pollIntervalMs) {
          await flush();
          if (stopping !== undefined) break;
          // A restart resets the offset to 0. A commit of this worker in flight at that moment
          // may have landed after the reset, and a compare-and-set from an expected 0 cannot
          // tell (a replay not yet committed expects 0 too): so, with nothing in flight any more
          // (the flush above), the worker resets its shard once more. Harmless when not needed.
          if (restarted) {
            await offsets.reset(readSideId, shard);
            restarted = false;
          }
          recheck = false;
          const stored = await offsets.get(readSideId, shard);
          rowReadAt = performance.now();
          // after the flush the stored offset is what this worker delivered, unless someone
          // else moved it (restart, skip): an operator acted, so a stop is lifted too
          if (!moved && stored.position !== committed) stats.stopped = false;
          moved = false;
          committed = cursor = stored.position;
          stats.position = stored.position;
          stats.paused = paused = stored.paused;
        }
        if (paused || stats.stopped) {
          await flush();
          // new events do not matter now; only a control signal or the poll does
          await sleep(options.pollIntervalMs, () => recheck || stopping !== undefined);
          continue;
        }
        dirty = false;
        // a page read ahead (after a full one) while the previous was delivered, if it follows on
        const events = await (ahead?.after === cursor ? ahead.page : journal.readShard({ shard, afterPosition: cursor, limit: options.batchSize }));
        ahead = undefined;
        if (events.length === options.batchSize) {
          const after = events.at(-1)!.position;
          const page = journal.readShard({ shard, afterPosition: after, limit: options.batchSize });
          page.catch(() => {}); // awaited, or dropped when the stream goes elsewhere
          ahead = { after, page };
        }
        if (events.length === 0) {
          await flush(); // idle: what was delivered is committed now
          await sleep(Math.max(0, rowReadAt + options.pollIntervalMs - performance.now()), () => dirty || recheck || stopping !== undefined);
          continue;
        }
        let from = 0;
        if (handler.handleBatch) {
          const accepted = await deliverBatch(events, handler.handleBatch);
          if (accepted === 'interrupted') continue;
          if (accepted > 0) {
            cursor = events[accepted - 1]!.position;
            scheduleCommit();
          }
          from = accepted;
        }
        for (const event of events.slice(from)) {
          if (recheck || stopping !== undefined) break;
          const outcome = await deliver(event);
          if (outcome !== 'next') break;
          cursor = event.position;
          scheduleCommit();
          // after a failed batch only its first event not accepted goes alone; then batches again
          if (handler.handleBatch) break;
        }
        failedRounds = 0;
      } catch (error) {
        // the database failed (reading or committing): retry the round with backoff
        failedRounds++;
        recheck = true;
        logger.warn('read side stream failed to read or commit; retrying', { ...where, err: error });
        await sleep(backoffMs(failedRounds - 1, { initialBackoffMs: 200, maxBackoffMs: 5_000 }), () => stopping !== undefined);
      }
    }
    if (stopping !== 'lost') {
      await flush().catch((error: unknown) =>
        logger.warn('read side offset not committed at stop; the next owner re-delivers', { ...where, err: error }),
      );
    }
  };

  const done = run().catch((error: unknown) => logger.error('read side stream crashed', { ...where, err: error }));

  return {
    wake() {
      dirty = true;
      poke();
    },
    control(action) {
      if (action !== 'pause') stats.stopped = false;
      if (action === 'restart') {
        // what was delivered before the restart must not be committed after it
        restarted = true;
        moved = true;
      }
      recheck = true;
      poke();
    },
    stop(reason) {
      if (stopping === undefined || reason === 'lost') stopping = reason;
      poke();
      return done;
    },
  };
}

/** How many leading events of a failed batch were accepted: the error's `accepted`, within 0..size. */
function acceptedOf(error: unknown, size: number): number {
  const accepted = (error as { accepted?: unknown } | null | undefined)?.accepted;
  return typeof accepted === 'number' && Number.isInteger(accepted) ? Math.min(Math.max(accepted, 0), size - 1) : 0;
}

import { ROOT_CONTEXT, SpanStatusCode, trace, type Span } from '@opentelemetry/api';
import { CircuitOpenError, TRACER_NAME, publicMessageOf, traceLogFields } from '@chiefofstate/core';
import type { HandleReadSideRequest } from '@chiefofstate/protocol';
import { entityIdHeader, toReadSideRequest } from './delivery-request.js';
import { backoffMs, decideOnFailure } from './failure-policy.js';
import type { JournalEventRecord, ReadSideHandlerPort } from './ports.js';
import { interrupted, sleep, type StreamState } from './stream-state.js';
import type { StreamStats } from './stream-worker.js';

/*
 * Deliveries of a stream: one event at a time to handleReadSide, under the failure policy, or
 * a read batch at once to handleBatch (publishers).
 */

const tracer = trace.getTracer(TRACER_NAME);

/** while a breaker's trial call is in flight, how often the other shards ask again */
const BREAKER_POLL_MS = 100;
/** the longest wait for an open breaker before asking again */
const MAX_BREAKER_WAIT_MS = 60_000;

export type Outcome = 'next' | 'stopped' | 'interrupted';

/** Delivers one event, retried as the failure policy says: what the stream does next. */
export async function deliver(s: StreamState, event: JournalEventRecord): Promise<Outcome> {
  const { readSideId, shard, handler, logger } = s.options;
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
      const span = deliverySpan(s, event, attempt);
      if (span.isRecording()) traceIds = traceLogFields(span);
      try {
        const response = await handler.handleReadSide(request, {
          headers,
          timeoutMs: s.options.timeoutMs,
          traceContext: trace.setSpan(ROOT_CONTEXT, span),
          record: event,
        });
        span.setAttribute('cos.read_side.successful', response.successful);
        if (!response.successful) span.setStatus({ code: SpanStatusCode.ERROR, message: 'successful=false' });
        span.end();
        if (s.stopping === 'lost') return 'interrupted';
        if (response.successful) {
          s.options.stats.delivered++;
          s.options.onDelivery?.(readSideId, (performance.now() - startedAt) / 1000, 'success');
          return 'next';
        }
        failure = new Error('the handler replied successful=false');
      } catch (error) {
        // the handler's own status message, or only what failed (its address stays in the log)
        span.setStatus({ code: SpanStatusCode.ERROR, message: publicMessageOf(error) });
        span.end();
        if (s.stopping === 'lost') return 'interrupted';
        failure = error;
      }
    }
    if (failure instanceof CircuitOpenError && !s.recheck && s.stopping === undefined) {
      // The read side's breaker is open: the handler is known down and nothing was sent. Wait
      // for its trial call instead of using up the failure policy's retries on refusals.
      logger.debug({ ...s.where, retryAfterMs: failure.retryAfterMs }, 'read side circuit breaker open; waiting');
      await sleep(s, Math.min(Math.max(failure.retryAfterMs, BREAKER_POLL_MS), MAX_BREAKER_WAIT_MS), () => interrupted(s));
      if (interrupted(s)) return 'interrupted';
      attempt--;
      continue;
    }
    const next = afterFailure(s, event, attempt, failure, traceIds, startedAt);
    if (next !== 'retry') return next;
    await sleep(s, backoffMs(attempt, s.options.retry), () => interrupted(s));
    if (interrupted(s)) return 'interrupted';
  }
}

/**
 * Each attempt is a trace of its own (deliveries happen apart from any caller); the handler
 * call's client span, and the handler's own spans, nest under it.
 */
function deliverySpan(s: StreamState, event: JournalEventRecord, attempt: number): Span {
  return tracer.startSpan(
    'cos.read_side.deliver',
    {
      attributes: {
        'cos.read_side_id': s.options.readSideId,
        'cos.shard': s.options.shard,
        'cos.entity_id': event.entityId,
        'cos.position': Number(event.position),
        'cos.attempt': attempt + 1,
      },
    },
    ROOT_CONTEXT,
  );
}

/** A failed attempt, counted and logged: what the failure policy says comes next. */
function afterFailure(
  s: StreamState,
  event: JournalEventRecord,
  attempt: number,
  failure: unknown,
  traceIds: { trace_id?: string; span_id?: string },
  startedAt: number,
): Outcome | 'retry' {
  const { readSideId, logger, stats, onDelivery, failurePolicy } = s.options;
  noteFailure(stats, failure);
  // A skip, restart, pause or resume arrived during the call: the stored offset decides what
  // comes next, not the policy (a skip of this very event must not end in a stop).
  if (interrupted(s)) {
    onDelivery?.(readSideId, (performance.now() - startedAt) / 1000, 'failure');
    return 'interrupted';
  }
  const decision = decideOnFailure(failurePolicy, attempt, s.options.retry);
  onDelivery?.(readSideId, (performance.now() - startedAt) / 1000, decision === 'skip' ? 'skipped' : 'failure');
  const fields = {
    ...s.where,
    position: String(event.position),
    entityId: event.entityId,
    attempt: attempt + 1,
    policy: failurePolicy,
    err: failure,
    ...traceIds,
  };
  if (decision === 'skip') {
    stats.skipped++;
    logger.warn(fields, 'read side handler failed; event skipped by the failure policy');
    return 'next';
  }
  if (decision === 'stop') {
    stats.stopped = true;
    stats.stops++;
    logger.error(fields, 'read side handler failed; shard stopped by the failure policy until resumed or restarted');
    return 'stopped';
  }
  logger.warn(fields, 'read side handler failed; retrying');
  return 'retry';
}

/**
 * A read batch at once (handlers with handleBatch: publishers): how many leading events were
 * accepted, or 'interrupted' when the stream was lost meanwhile.
 */
export async function deliverBatch(
  s: StreamState,
  events: readonly JournalEventRecord[],
  handleBatch: NonNullable<ReadSideHandlerPort['handleBatch']>,
): Promise<number | 'interrupted'> {
  const { readSideId, shard, handler, logger, stats, onDelivery } = s.options;
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
    await handleBatch.call(handler, events, { timeoutMs: s.options.timeoutMs });
  } catch (error) {
    failure = error;
    accepted = acceptedOf(error, events.length);
    span.setStatus({ code: SpanStatusCode.ERROR, message: publicMessageOf(error) });
    span.setAttribute('cos.events_accepted', accepted);
  }
  span.end();
  if (s.stopping === 'lost') return 'interrupted';
  const seconds = (performance.now() - startedAt) / 1000;
  // the histogram counts events: each accepted one took the batch's time
  for (let i = 0; i < accepted; i++) onDelivery?.(readSideId, seconds, 'success');
  stats.delivered += accepted;
  if (failure !== undefined) {
    onDelivery?.(readSideId, seconds, 'failure');
    noteFailure(stats, failure);
    logger.warn(
      {
        ...s.where,
        position: String(events[accepted]!.position),
        accepted,
        events: events.length,
        err: failure,
        ...(span.isRecording() ? traceLogFields(span) : {}),
      },
      'read side batch failed; its first event not accepted goes on its own, under the failure policy',
    );
  }
  return accepted;
}

function noteFailure(stats: StreamStats, failure: unknown): void {
  stats.failures++;
  stats.lastError = failure instanceof Error ? failure.message : String(failure);
  stats.lastErrorAt = new Date();
}

/** How many leading events of a failed batch were accepted: the error's `accepted`, within 0..size. */
function acceptedOf(error: unknown, size: number): number {
  const accepted = (error as { accepted?: unknown } | null | undefined)?.accepted;
  return typeof accepted === 'number' && Number.isInteger(accepted) ? Math.min(Math.max(accepted, 0), size - 1) : 0;
}

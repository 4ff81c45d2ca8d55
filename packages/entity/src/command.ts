import { context, propagation, trace, type Context, type Span } from '@opentelemetry/api';
import { DeadlineExceededError, TRACER_NAME, type CommandRequest, type EntityState } from '@chiefofstate/core';
import type { HandlerCallOptions } from './ports.js';

/** A queued ProcessCommand. */
export interface Command {
  readonly request: CommandRequest;
  /** epoch ms; Infinity when none */
  readonly deadline: number;
  /** appends of its events refused for a conflict so far */
  conflicts: number;
  /** with an idempotency key: the digest of its body (computed once, when needed) */
  digest?: Uint8Array;
  digestText?: string;
  resolve(value: EntityState): void;
  reject(reason: unknown): void;
  /**
   * When the caller's trace is recorded: the command's `cos.entity.command` span and its
   * context, passed explicitly to the handler calls and the journal append. Commands run from
   * the entity's mailbox loop, whose async context is whichever command started it.
   */
  readonly trace?: { readonly span: Span; readonly context: Context };
}

const tracer = trace.getTracer(TRACER_NAME);

/** The command's span, only when the caller's trace is recorded (no cost otherwise). */
export function commandTrace(request: CommandRequest): Command['trace'] {
  const parent = request.traceContext ?? context.active();
  if (!trace.getSpan(parent)?.isRecording()) return undefined;
  const span = tracer.startSpan('cos.entity.command', { attributes: { 'cos.entity_id': request.entityId } }, parent);
  return { span, context: trace.setSpan(parent, span) };
}

/**
 * The W3C trace context stored with the command's events (for the broker publishers): the
 * command's span when it is recorded, else the caller's traceparent/tracestate as received.
 */
export function commandTraceContext(command: Command): { traceparent?: string; tracestate?: string } {
  const carrier: Record<string, string> = {};
  if (command.trace) propagation.inject(command.trace.context, carrier);
  const traceparent = carrier['traceparent'] ?? command.request.propagatedHeaders?.['traceparent'];
  if (traceparent === undefined) return {};
  const tracestate = carrier['traceparent'] !== undefined ? carrier['tracestate'] : command.request.propagatedHeaders?.['tracestate'];
  return tracestate === undefined ? { traceparent } : { traceparent, tracestate };
}

/** The handler call options of the command: its headers, cancellation, remaining time and trace. */
export function callOptions(command: Command, now: number): HandlerCallOptions | undefined {
  const { request, deadline, trace: traced } = command;
  if (
    request.propagatedHeaders === undefined &&
    request.signal === undefined &&
    deadline === Infinity &&
    traced === undefined
  ) {
    return undefined;
  }
  return {
    headers: request.propagatedHeaders,
    signal: request.signal,
    timeoutMs: deadline === Infinity ? undefined : deadline - now,
    traceContext: traced?.context,
  };
}

/** Throws when the command's caller cancelled or its deadline passed (`when`: for the message). */
export function checkTime(command: Command, now: number, when: string): void {
  const { signal } = command.request;
  if (signal?.aborted) throw signal.reason ?? new DeadlineExceededError(`command cancelled ${when}`);
  if (command.deadline !== Infinity && now >= command.deadline) {
    throw new DeadlineExceededError(`deadline exceeded ${when}`);
  }
}

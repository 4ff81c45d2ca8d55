import { context, propagation, SpanKind, SpanStatusCode, trace, type Context, type Span } from '@opentelemetry/api';
import { ConnectError } from '@connectrpc/connect';
import {
  DeadlineExceededError,
  HandlerFailedError,
  HandlerUnavailableError,
  TRACER_NAME,
  publicMessageOf,
} from '@chiefofstate/core';
import { ChiefOfStateService, ReadSideHandlerService, WriteSideHandlerService } from '@chiefofstate/protocol';
import type { CallBreaker, HandlerCallOptions } from './transport.js';
import { translateHandlerError } from './translate-error.js';

export interface ConnectCallOptions {
  headers?: Headers | Record<string, string>;
  signal?: AbortSignal;
  timeoutMs: number;
}

const tracer = trace.getTracer(TRACER_NAME);

export interface InvokerOptions {
  /** how failures name the handler, e.g. `write handler host:port` */
  readonly target: string;
  /** the service's full name, for span names and attributes */
  readonly service: string;
  readonly defaultTimeoutMs: number;
  readonly isClosed: () => boolean;
  readonly breaker?: CallBreaker | undefined;
}

/**
 * Runs one unary call with the effective deadline, a client span when the caller's trace is
 * recorded (its context injected as `traceparent`, so the handler continues the trace), and
 * translates its failure. Shared by the write and read side clients.
 */
export function createInvoker(
  options: InvokerOptions,
): <T>(method: string, call: HandlerCallOptions | undefined, run: (options: ConnectCallOptions) => Promise<T>) => Promise<T> {
  const { target, service, defaultTimeoutMs, isClosed, breaker } = options;
  const role = roleOf(service);
  return async (method, call, run) => {
    let timeoutMs =
      call?.timeoutMs === undefined ? defaultTimeoutMs : Math.min(defaultTimeoutMs, Math.floor(call.timeoutMs));
    if (isClosed()) throw new HandlerUnavailableError(`${target} ${method}: client closed`, { publicMessage: `${role} unavailable` });
    if (call?.signal?.aborted) throw call.signal.reason;
    if (timeoutMs <= 0) {
      throw new DeadlineExceededError(`${target} ${method}: no time left for the call`, {
        publicMessage: `no time left to call the ${role}`,
      });
    }
    // refused at once while the breaker is open: nothing is sent, no span
    const permit = breaker?.acquire(timeoutMs);
    if (permit) timeoutMs = permit.timeoutMs;
    const traced = clientSpan(service, method, call);
    const span = traced?.span;
    const headers = traced ? withTraceContext(traced.context, call?.headers) : call?.headers;
    const startedAt = performance.now();
    try {
      const response = await run({ headers, signal: call?.signal, timeoutMs });
      permit?.succeeded();
      span?.setAttribute('rpc.grpc.status_code', 0);
      return response;
    } catch (error) {
      const failure = translateHandlerError(error, {
        description: `${target} ${method}`,
        role,
        timeoutMs,
        startedAt,
        signal: call?.signal,
      });
      if (permit) {
        const outcome = breakerOutcome(failure, call?.signal);
        if (outcome === 'failure') permit.failed();
        else if (outcome === 'success') permit.succeeded();
        else permit.released();
      }
      if (span) {
        span.setAttribute('rpc.grpc.status_code', ConnectError.from(error).code);
        // what a caller may be told (a handler's own status message is that): a transport
        // failure's words name the handler's address
        span.setStatus({ code: SpanStatusCode.ERROR, message: publicMessageOf(failure) });
      }
      throw failure;
    } finally {
      span?.end();
    }
  };
}

/** gRPC codes of a handler's own answer that say it is not well (as unreachable or too slow is) */
const UNHEALTHY_CODES: ReadonlySet<number> = new Set([2, 4, 13, 14]); // UNKNOWN, DEADLINE_EXCEEDED, INTERNAL, UNAVAILABLE

/**
 * What a failed call tells a circuit breaker: the handler unreachable, too slow, or answering
 * UNKNOWN / DEADLINE_EXCEEDED / INTERNAL / UNAVAILABLE is a failure; any other answer (a
 * command refused, INVALID_ARGUMENT, FAILED_PRECONDITION, ...) shows the handler works; a call
 * its caller gave up, or a message over the size limit, says nothing about it.
 */
function breakerOutcome(failure: unknown, signal: AbortSignal | undefined): 'success' | 'failure' | 'none' {
  if (signal?.aborted) return 'none';
  if (failure instanceof HandlerFailedError) return UNHEALTHY_CODES.has(failure.statusCode) ? 'failure' : 'success';
  if (failure instanceof HandlerUnavailableError || failure instanceof DeadlineExceededError) return 'failure';
  return 'none';
}

/** How failures name the callee to callers outside (the address stays in the log). */
function roleOf(service: string): string {
  return ROLES[service] ?? 'handler';
}

const ROLES: Readonly<Record<string, string>> = {
  [WriteSideHandlerService.typeName]: 'write handler',
  [ReadSideHandlerService.typeName]: 'read-side handler',
  [ChiefOfStateService.typeName]: 'replica owning the entity',
};

/** The call's span, only when its parent (the call's trace context, else the active one) is recorded. */
function clientSpan(
  service: string,
  method: string,
  call: HandlerCallOptions | undefined,
): { span: Span; context: Context } | undefined {
  const parent = call?.traceContext ?? context.active();
  if (!trace.getSpan(parent)?.isRecording()) return undefined;
  const span = tracer.startSpan(
    `${service}/${method}`,
    {
      kind: SpanKind.CLIENT,
      attributes: { 'rpc.system': 'grpc', 'rpc.service': service, 'rpc.method': method },
    },
    parent,
  );
  return { span, context: trace.setSpan(parent, span) };
}

/** The call's headers with `traceparent` (and `tracestate`) of its span, replacing the caller's. */
function withTraceContext(
  traceContext: Context,
  headers: Headers | Record<string, string> | undefined,
): Record<string, string> {
  const carrier = headerRecord(headers);
  propagation.inject(traceContext, carrier);
  return carrier;
}

/** A call's headers as a fresh record, whichever form they were given in, to add to. */
export function headerRecord(headers: Headers | Record<string, string> | undefined): Record<string, string> {
  const record: Record<string, string> = {};
  if (headers instanceof Headers) headers.forEach((value, key) => (record[key] = value));
  else if (headers) Object.assign(record, headers);
  return record;
}

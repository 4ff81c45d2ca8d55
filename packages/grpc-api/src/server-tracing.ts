import {
  context,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Context,
  type Span,
  type TextMapGetter,
} from '@opentelemetry/api';
import { ConnectError, createContextKey, type Interceptor } from '@connectrpc/connect';
import { TRACER_NAME } from '@chiefofstate/core';

/**
 * The OpenTelemetry context of a call, with its server span: set by the server tracing
 * interceptor, read by the services (`HandlerContext.values`) and passed on explicitly, so the
 * command's spans and handler calls join the caller's trace without a context manager.
 */
export const callTraceContext = createContextKey<Context | undefined>(undefined, {
  description: 'OpenTelemetry context of the call',
});

const getter: TextMapGetter<Headers> = {
  keys: (carrier) => [...carrier.keys()],
  get: (carrier, key) => carrier.get(key) ?? undefined,
};

const tracer = trace.getTracer(TRACER_NAME);

function recordOutcome(span: Span, error: unknown): void {
  if (error === undefined) {
    span.setAttribute('rpc.grpc.status_code', 0);
    return;
  }
  const connectError = ConnectError.from(error);
  span.setAttribute('rpc.grpc.status_code', connectError.code);
  span.setStatus({ code: SpanStatusCode.ERROR, message: connectError.rawMessage });
}

export interface ServerTracingOptions {
  /** services not traced, e.g. grpc.health.v1.Health, which probes call every few seconds */
  readonly ignoreServices?: readonly string[];
}

/**
 * A server span for each call, continuing the caller's W3C trace context. Its context is put in
 * the call's context values (`callTraceContext`), and the call also runs as the active context
 * for hosts that register a context manager.
 */
export function createServerTracingInterceptor(options: ServerTracingOptions = {}): Interceptor {
  const ignored = new Set(options.ignoreServices ?? []);
  return (next) => async (request) => {
    if (ignored.has(request.service.typeName)) return next(request);
    const parent = propagation.extract(ROOT_CONTEXT, request.header, getter);
    const span = tracer.startSpan(
      `${request.service.typeName}/${request.method.name}`,
      {
        kind: SpanKind.SERVER,
        attributes: {
          'rpc.system': 'grpc',
          'rpc.service': request.service.typeName,
          'rpc.method': request.method.name,
        },
      },
      parent,
    );
    // Not recorded (no SDK, or not sampled): nothing to pass on; the raw traceparent still
    // reaches the handlers through the propagated headers.
    if (!span.isRecording()) return next(request);
    const traceContext = trace.setSpan(parent, span);
    request.contextValues.set(callTraceContext, traceContext);
    try {
      const response = await context.with(traceContext, next, undefined, request);
      recordOutcome(span, undefined);
      return response;
    } catch (error) {
      recordOutcome(span, error);
      throw error;
    } finally {
      span.end();
    }
  };
}

import {
  context,
  propagation,
  SpanKind,
  SpanStatusCode,
  trace,
  type Span,
  type TextMapGetter,
  type TextMapSetter,
} from '@opentelemetry/api';
import { ConnectError, type Interceptor } from '@connectrpc/connect';
import { TRACER_NAME } from './tracing.js';

const getter: TextMapGetter<Headers> = {
  keys: (carrier) => [...carrier.keys()],
  get: (carrier, key) => carrier.get(key) ?? undefined,
};
const setter: TextMapSetter<Headers> = {
  set: (carrier, key, value) => carrier.set(key, value),
};

function rpcAttributes(service: string, method: string) {
  return { 'rpc.system': 'grpc', 'rpc.service': service, 'rpc.method': method };
}

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
 * A server span for each call, continuing the caller's W3C trace context; handlers run inside
 * it, so spans they start (and log lines) belong to the caller's trace.
 */
export function createServerTracingInterceptor(options: ServerTracingOptions = {}): Interceptor {
  const ignored = new Set(options.ignoreServices ?? []);
  return (next) => async (request) => {
    if (ignored.has(request.service.typeName)) return next(request);
    const tracer = trace.getTracer(TRACER_NAME);
    const parent = propagation.extract(context.active(), request.header, getter);
    const span = tracer.startSpan(
      `${request.service.typeName}/${request.method.name}`,
      { kind: SpanKind.SERVER, attributes: rpcAttributes(request.service.typeName, request.method.name) },
      parent,
    );
    return context.with(trace.setSpan(parent, span), async () => {
      try {
        const response = await next(request);
        recordOutcome(span, undefined);
        return response;
      } catch (error) {
        recordOutcome(span, error);
        throw error;
      } finally {
        span.end();
      }
    });
  };
}

/**
 * A client span for each outgoing call, and its context injected as `traceparent`, so the
 * user's handler continues the same trace.
 */
export function createClientTracingInterceptor(): Interceptor {
  return (next) => async (request) => {
    const tracer = trace.getTracer(TRACER_NAME);
    const span = tracer.startSpan(`${request.service.typeName}/${request.method.name}`, {
      kind: SpanKind.CLIENT,
      attributes: rpcAttributes(request.service.typeName, request.method.name),
    });
    const ctx = trace.setSpan(context.active(), span);
    if (span.isRecording()) propagation.inject(ctx, request.header, setter);
    try {
      const response = await context.with(ctx, () => next(request));
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

import { context, propagation, trace, type Tracer } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';

/** The tracer name COS's own spans are created under. */
export const TRACER_NAME = 'chiefofstate';

export interface TracingOptions {
  /** `service.name` (COS_SERVICE_NAME) */
  readonly serviceName: string;
  readonly serviceVersion?: string;
  /** added as the `team.name` resource attribute (TEAM_NAME) */
  readonly teamName?: string | undefined;
  /**
   * OTLP/HTTP traces URL (e.g. http://jaeger:4318/v1/traces). Undefined and no `spanProcessors`:
   * tracing stays off, nothing is exported and nothing is logged about a missing collector.
   */
  readonly tracesEndpoint?: string | undefined;
  /** extra processors, e.g. an in-memory exporter in tests */
  readonly spanProcessors?: readonly SpanProcessor[];
}

export interface Tracing {
  /** whether spans are recorded and exported */
  readonly enabled: boolean;
  readonly tracer: Tracer;
  /** the active span's ids, for log lines; empty outside a traced request */
  logFields(): { trace_id?: string; span_id?: string };
  /** flushes pending spans and unregisters the SDK */
  shutdown(): Promise<void>;
}

/**
 * Sets up OpenTelemetry for the process: the W3C trace-context propagator, async context, and
 * an OTLP/HTTP exporter with batching. Libraries create spans through @opentelemetry/api only;
 * this is the one place that installs the SDK, so it belongs in a composition root.
 */
export function createTracing(options: TracingOptions): Tracing {
  const processors: SpanProcessor[] = [...(options.spanProcessors ?? [])];
  if (options.tracesEndpoint !== undefined) {
    processors.push(new BatchSpanProcessor(new OTLPTraceExporter({ url: options.tracesEndpoint })));
  }
  // Trace context still flows from callers to handlers without an SDK: the raw traceparent
  // header is passed on by the gRPC edge.
  if (processors.length === 0) {
    return {
      enabled: false,
      tracer: trace.getTracer(TRACER_NAME),
      logFields: () => ({}),
      shutdown: async () => {},
    };
  }
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({
      [ATTR_SERVICE_NAME]: options.serviceName,
      ...(options.serviceVersion ? { [ATTR_SERVICE_VERSION]: options.serviceVersion } : {}),
      ...(options.teamName ? { 'team.name': options.teamName } : {}),
    }),
    spanProcessors: processors,
  });
  provider.register({ propagator: new W3CTraceContextPropagator() });
  const tracer = provider.getTracer(TRACER_NAME);
  return {
    enabled: true,
    tracer,
    logFields() {
      const span = trace.getSpan(context.active());
      if (!span) return {};
      const { traceId, spanId } = span.spanContext();
      return { trace_id: traceId, span_id: spanId };
    },
    async shutdown() {
      await provider.shutdown();
      trace.disable();
      propagation.disable();
      context.disable();
    },
  };
}

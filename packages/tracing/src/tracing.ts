import { context, propagation, trace, type Tracer } from '@opentelemetry/api';
import { ExportResultCode, W3CTraceContextPropagator } from '@opentelemetry/core';
import { TRACER_NAME, traceLogFields } from '@chiefofstate/core';
import { OTLPTraceExporter as OtlpJsonTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  type BufferConfig,
  type Sampler,
  type SpanExporter,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';
import { createOtlpSpanProcessor, type OtlpExportFailure } from './otlp-span-processor.js';

/** The OTLP/HTTP encodings (OTEL_EXPORTER_OTLP_PROTOCOL); OTLP over gRPC is not offered. */
export type TracingProtocol = 'http/protobuf' | 'http/json';

/** Which traces are recorded, named as by OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG. */
export interface TracingSampler {
  readonly name:
    | 'always_on'
    | 'always_off'
    | 'traceidratio'
    | 'parentbased_always_on'
    | 'parentbased_always_off'
    | 'parentbased_traceidratio';
  /** the share of new traces the traceidratio samplers record, 0..1; default 1 */
  readonly ratio?: number;
}

/** The BatchSpanProcessor's settings (OTEL_BSP_*); each unset one gets the spec's default. */
export interface TracingBatch {
  /** ms between two exports; default 5000 */
  readonly scheduleDelayMs?: number;
  /** ms an export may take before it is cancelled; default 30000 */
  readonly exportTimeoutMs?: number;
  /** spans held for export; more are dropped; default 2048 */
  readonly maxQueueSize?: number;
  /** most spans in one export, at most maxQueueSize; default 512 */
  readonly maxExportBatchSize?: number;
}

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
  /**
   * How spans are encoded to `tracesEndpoint`. Default `http/protobuf`: the OpenTelemetry spec's
   * default, which every collector accepts, and cheaper to encode and send than JSON.
   */
  readonly protocol?: TracingProtocol;
  /** default `parentbased_always_on`: a caller's sampled flag decides, new traces are all recorded */
  readonly sampler?: TracingSampler;
  readonly batch?: TracingBatch;
  /**
   * Told of each export the collector did not take (after the exporter's retries); its spans are
   * lost. Default: nothing is said, as with the SDK when no diagnostic logger is set.
   */
  readonly onExportFailure?: (failure: OtlpExportFailure) => void;
  /** Told how many spans were dropped because the export queue was full (http/protobuf only). */
  readonly onDropped?: (spans: number) => void;
  /** extra processors, e.g. an in-memory exporter in tests */
  readonly spanProcessors?: readonly SpanProcessor[];
  /**
   * Register the AsyncLocalStorage context manager, so `context.active()` follows async calls.
   * Default false: COS's packages pass the trace context explicitly and need none, and on Node 20
   * the manager's promise hooks cost every promise in the process (about a sixth of cos-server's
   * CPU per command; see docs/benchmarks.md). Turn it on when code of your own in this process
   * relies on the active context.
   */
  readonly asyncContext?: boolean;
}

export interface Tracing {
  /** whether spans are recorded and exported */
  readonly enabled: boolean;
  readonly tracer: Tracer;
  /**
   * The active span's ids, for log lines; empty outside a traced request, and always empty without
   * `asyncContext` (COS's packages then add the ids to their in-request log lines themselves).
   */
  logFields(): { trace_id?: string; span_id?: string };
  /** flushes pending spans and unregisters the SDK */
  shutdown(): Promise<void>;
}

/**
 * Sets up OpenTelemetry for the process: the W3C trace-context propagator, a sampler, and an
 * OTLP/HTTP exporter with batching. Libraries create spans through @opentelemetry/api only;
 * this is the one place that installs the SDK, so it belongs in a composition root.
 *
 * Sampler and batching come from the options only, never from the SDK's own unchecked reading of
 * OTEL_TRACES_SAMPLER / OTEL_BSP_* (@chiefofstate/config validates those). The exporter still
 * reads OTEL_EXPORTER_OTLP_*HEADERS, *TIMEOUT, *COMPRESSION and the certificate files itself.
 */
export function createTracing(options: TracingOptions): Tracing {
  const processors: SpanProcessor[] = [...(options.spanProcessors ?? [])];
  if (options.tracesEndpoint !== undefined) processors.push(createExportProcessor(options, options.tracesEndpoint));
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
    sampler: createSampler(options.sampler ?? { name: 'parentbased_always_on' }),
    spanProcessors: processors,
  });
  provider.register({
    propagator: new W3CTraceContextPropagator(),
    ...(options.asyncContext ? {} : { contextManager: null }),
  });
  const tracer = provider.getTracer(TRACER_NAME);
  return {
    enabled: true,
    tracer,
    logFields() {
      return traceLogFields(trace.getSpan(context.active()));
    },
    async shutdown() {
      await provider.shutdown();
      trace.disable();
      propagation.disable();
      context.disable();
    },
  };
}

function createExportProcessor(options: TracingOptions, url: string): SpanProcessor {
  const batch = options.batch ?? {};
  if ((options.protocol ?? 'http/protobuf') === 'http/protobuf') {
    return createOtlpSpanProcessor({
      url,
      ...batch,
      ...(options.onExportFailure ? { onExportFailure: options.onExportFailure } : {}),
      ...(options.onDropped ? { onDropped: options.onDropped } : {}),
    });
  }
  // JSON, for collectors that want it: the SDK's own batch processor and exporter.
  const exporter = new OtlpJsonTraceExporter({ url });
  const report = options.onExportFailure;
  const reporting: SpanExporter =
    report === undefined
      ? exporter
      : {
          export: (spans, done) =>
            exporter.export(spans, (result) => {
              if (result.code !== ExportResultCode.SUCCESS) {
                report({ error: result.error ?? new Error('OTLP export failed'), spans: spans.length });
              }
              done(result);
            }),
          shutdown: () => exporter.shutdown(),
          forceFlush: () => exporter.forceFlush(),
        };
  return new BatchSpanProcessor(reporting, batchConfig(batch));
}

function createSampler(sampler: TracingSampler): Sampler {
  const ratio = () => new TraceIdRatioBasedSampler(sampler.ratio ?? 1);
  switch (sampler.name) {
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return ratio();
    case 'parentbased_always_on':
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: ratio() });
  }
}

/** Every field set, so the SDK's BatchSpanProcessor never falls back to reading OTEL_BSP_*. */
function batchConfig(batch: TracingBatch): Required<BufferConfig> {
  const maxQueueSize = batch.maxQueueSize ?? 2048;
  return {
    scheduledDelayMillis: batch.scheduleDelayMs ?? 5000,
    exportTimeoutMillis: batch.exportTimeoutMs ?? 30_000,
    maxQueueSize,
    maxExportBatchSize: batch.maxExportBatchSize ?? Math.min(512, maxQueueSize),
  };
}

export {
  createTracing,
  type Tracing,
  type TracingBatch,
  type TracingOptions,
  type TracingProtocol,
  type TracingSampler,
} from './tracing.js';
export {
  createOtlpHttpSend,
  createOtlpSpanProcessor,
  type EncodedSpans,
  type OtlpExportFailure,
  type OtlpSend,
  type OtlpSpanProcessorOptions,
} from './otlp-span-processor.js';

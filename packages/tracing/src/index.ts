export {
  createTracing,
  TRACER_NAME,
  type Tracing,
  type TracingBatch,
  type TracingOptions,
  type TracingProtocol,
  type TracingSampler,
} from './tracing.js';

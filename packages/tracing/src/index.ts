export { createTracing, TRACER_NAME, type Tracing, type TracingOptions } from './tracing.js';
export {
  createServerTracingInterceptor,
  createClientTracingInterceptor,
  type ServerTracingOptions,
} from './interceptors.js';

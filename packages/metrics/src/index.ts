export {
  createMetrics,
  type BreakerSample,
  type CosMetrics,
  type CosMetricsOptions,
  type MetricsSources,
  type PoolSample,
  type ReadSideShardSample,
} from './cos-metrics.js';
export { startMetricsServer, type MetricsServer, type MetricsServerOptions, type Readiness } from './metrics-server.js';

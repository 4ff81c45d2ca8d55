export {
  createMetrics,
  type CosMetrics,
  type CosMetricsOptions,
  type MetricsSources,
  type PoolSample,
  type ReadSideShardSample,
} from './cos-metrics.js';
export { startMetricsServer, type MetricsServer, type MetricsServerOptions } from './metrics-server.js';

export { loadConfig, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_POOL_MAX, DEFAULT_TRACE_PORT } from './load-config.js';
export type { LoadConfigOptions, LoadedConfig } from './load-config.js';
export { redactConfig, REDACTED } from './redact.js';
export { DEFAULT_FAILURE_POLICY, DEFAULT_READ_SIDE_ID } from './read-sides.js';
export { DEFAULT_PUBLISH_TIMEOUT_MS } from './publishers.js';
export { CONFIG_VARIABLES } from './variables.js';
export { readTypeRegistry, DESCRIPTOR_SET_VARIABLE } from './front-ends.js';
export type { ConfigVariable } from './variables.js';
export {
  CLIENT_AUTH_MODES,
  DEPLOYMENT_MODES,
  FAILURE_POLICIES,
  LOG_LEVELS,
  LOG_STYLES,
  OTLP_PROTOCOLS,
  POSTGRES_SSL_MODES,
  PUBLISHER_SINKS,
  SERVER_PROTOCOLS,
  TRACE_SAMPLERS,
} from './types.js';
export type {
  CallerAuthConfig,
  ClientAuthMode,
  ListenerTlsConfig,
  SecurityConfig,
  ServiceCredentialsConfig,
  ClusterConfig,
  CosConfig,
  DeploymentMode,
  EmbeddedStoreConfig,
  EntityConfig,
  FrontEndsConfig,
  ServerProtocol,
  FailurePolicy,
  JournalConfig,
  TestHooksConfig,
  KafkaConfig,
  LogConfig,
  LogLevel,
  LogStyle,
  OtlpProtocol,
  PublisherConfig,
  PublisherSink,
  PostgresStoreConfig,
  PostgresSslMode,
  PostgresTlsConfig,
  ReadSideConfig,
  ClientTlsConfig,
  ReadSidesConfig,
  ServerConfig,
  SnapshotConfig,
  StoreConfig,
  TelemetryConfig,
  TimeoutConfig,
  TraceBatchConfig,
  TraceSamplerConfig,
  TraceSamplerName,
  TypeValidationConfig,
  WriteSideConfig,
} from './types.js';

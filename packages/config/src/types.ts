/**
 * The shape of a loaded configuration. Every object and array is frozen at run time, hence the
 * `readonly` everywhere: code holding a config cannot change what other code sees.
 */

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const LOG_STYLES = ['JSON', 'SIMPLE'] as const;
export type LogStyle = (typeof LOG_STYLES)[number];

export const DEPLOYMENT_MODES = ['docker', 'kubernetes'] as const;
export type DeploymentMode = (typeof DEPLOYMENT_MODES)[number];

/**
 * What a read side does when its handler fails (successful=false, an error or a timeout):
 * STOP stops that shard, SKIP skips the event, REPLAY_STOP / REPLAY_SKIP retry with backoff a
 * bounded number of times and then stop / skip.
 */
export const FAILURE_POLICIES = ['STOP', 'SKIP', 'REPLAY_STOP', 'REPLAY_SKIP'] as const;

/** How COS calls a handler: gRPC, or the newest upstream server's HTTP/JSON handler protocol. */
export const HANDLER_PROTOCOLS = ['grpc', 'http'] as const;
export type HandlerProtocol = (typeof HANDLER_PROTOCOLS)[number];

/** The brokers events can be published to (COS_PUBLISHER_CONFIG). */
export const PUBLISHER_SINKS = ['nats', 'rabbitmq'] as const;
export type PublisherSink = (typeof PUBLISHER_SINKS)[number];
export type FailurePolicy = (typeof FAILURE_POLICIES)[number];

/** OTLP over HTTP, protobuf or JSON; OTLP over gRPC is not supported. */
export const OTLP_PROTOCOLS = ['http/protobuf', 'http/json'] as const;
export type OtlpProtocol = (typeof OTLP_PROTOCOLS)[number];

/** The OTEL_TRACES_SAMPLER values of the OpenTelemetry specification that COS supports. */
export const TRACE_SAMPLERS = [
  'always_on',
  'always_off',
  'traceidratio',
  'parentbased_always_on',
  'parentbased_always_off',
  'parentbased_traceidratio',
] as const;
export type TraceSamplerName = (typeof TRACE_SAMPLERS)[number];

/** COS_TLS_CLIENT_AUTH: whether a client must present a certificate (when a client CA is set). */
export const CLIENT_AUTH_MODES = ['required', 'optional'] as const;
export type ClientAuthMode = (typeof CLIENT_AUTH_MODES)[number];

export interface ServerConfig {
  /** COS_ADDRESS */
  readonly address: string;
  /** COS_PORT */
  readonly port: number;
  /** COS_GRPC_MAX_MESSAGE_BYTES: largest request or response message, in bytes. */
  readonly maxMessageBytes: number;
  /** COS_GRPC_MAX_CONCURRENT_STREAMS: most open calls per client connection. */
  readonly maxConcurrentStreams: number;
  /** COS_GRPC_MAX_HEADER_BYTES: largest request header list, in bytes (HTTP/2's count). */
  readonly maxHeaderBytes: number;
  /** COS_GRPC_RECEIVE_TIMEOUT: most time from a call's headers to the end of its request, ms. */
  readonly receiveTimeoutMs: number;
  /** COS_GRPC_IDLE_TIMEOUT: a client connection without a frame for this long is closed, ms. */
  readonly idleTimeoutMs: number;
  /** COS_GRPC_SERVER_FAST_PATH: plain gRPC unary calls and subscription streams take the hand-written paths (else all go through Connect). */
  readonly unaryFastPath: boolean;
  /** COS_GRPC_CLIENT_FAST_PATH: calls to the handlers and peers take the hand-written transport (else Connect's). */
  readonly clientFastTransport: boolean;
}

/** PGlite in a directory: one process only. */
export interface EmbeddedStoreConfig {
  readonly kind: 'embedded';
  /** absolute path (COS_DATA_DIR resolved against the working directory) */
  readonly dataDir: string;
  readonly schema: string;
}

export interface PostgresStoreConfig {
  readonly kind: 'postgres';
  readonly host: string;
  readonly port: number;
  readonly user: string;
  /** never log this; `redactConfig` replaces it */
  readonly password: string;
  readonly database: string;
  readonly schema: string;
  /** COS_DB_POOL_MAX_SIZE */
  readonly poolMax: number;
  /** COS_DB_CONNECT_TIMEOUT (seconds) in ms: the wait for a connection, new or pooled */
  readonly connectTimeoutMs: number;
  /** COS_DB_STATEMENT_TIMEOUT (seconds) in ms: server statement_timeout and client-side statement bound */
  readonly statementTimeoutMs: number;
  /** COS_DB_IDLE_IN_TRANSACTION_TIMEOUT (seconds) in ms */
  readonly idleInTransactionTimeoutMs: number;
  /** COS_DB_POOL_MAX_WAITING: most callers waiting for a pool connection */
  readonly poolMaxWaiting: number;
  /** COS_POSTGRES_SSL_*: absent when COS_POSTGRES_SSL_MODE is disable (plaintext, as before) */
  readonly tls?: PostgresTlsConfig;
}

/** libpq's sslmode values; `allow` and `prefer` parse, then are refused (see docs/configuration.md). */
export const POSTGRES_SSL_MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;
export type PostgresSslMode = (typeof POSTGRES_SSL_MODES)[number];

/** TLS to PostgreSQL (the journal store and the offset store alike). */
export interface PostgresTlsConfig {
  /** COS_POSTGRES_SSL_MODE */
  readonly mode: 'require' | 'verify-ca' | 'verify-full';
  /** COS_POSTGRES_SSL_ROOT_CERT: an absolute path, or `system` (Node's trusted roots) */
  readonly rootCertFile?: string;
  /** COS_POSTGRES_SSL_CERT and COS_POSTGRES_SSL_KEY, absolute paths, both or neither */
  readonly certFile?: string;
  readonly keyFile?: string;
  /** COS_TLS_RELOAD_INTERVAL (seconds) in ms; 0: the files are read once */
  readonly reloadIntervalMs: number;
}

export type StoreConfig = EmbeddedStoreConfig | PostgresStoreConfig;

export interface KafkaConfig {
  /** `host:port` bootstrap servers, in the order given */
  readonly brokers: readonly string[];
}

export interface JournalConfig {
  /** COS_EVENTS_BATCH_THRESHOLD: most events written in one batched transaction */
  readonly eventsBatchThreshold: number;
  /** COS_JOURNAL_LOGICAL_DELETION: delete events older than the retained snapshots */
  readonly logicalDeletion: boolean;
  /** COS_JOURNAL_MAX_QUEUED_APPENDS: appends waiting for a batch; beyond, refused at once */
  readonly maxQueuedAppends: number;
  /** COS_IDEMPOTENCY_RETENTION: how long an idempotency key answers retries, ms */
  readonly idempotencyRetentionMs: number;
}

/** Hooks for tests of COS itself; never set in production. */
export interface TestHooksConfig {
  /** COS_TEST_KILL_AFTER_COMMIT: the process SIGKILLs itself right after an append of this entity commits */
  readonly killAfterCommitOf: string | undefined;
}

export interface SnapshotConfig {
  /** false when COS_DISABLE_SNAPSHOT=true */
  readonly enabled: boolean;
  /** COS_SNAPSHOT_FREQUENCY: snapshot every N events */
  readonly frequency: number;
  /** COS_NUM_SNAPSHOTS_TO_RETAIN */
  readonly retain: number;
}

export interface TypeValidationConfig {
  readonly enabled: boolean;
  /** fully qualified message names, e.g. `my.pkg.State` (no type URL prefix) */
  readonly stateTypes: readonly string[];
  readonly eventTypes: readonly string[];
}

/**
 * The TLS of an outbound client (a handler client, the peer client): PEM files, absolute paths,
 * re-read every reloadIntervalMs, and the name the server's certificate must carry.
 */
export interface ClientTlsConfig {
  /** the CA the server's certificate must chain to; undefined: the system's root CAs */
  readonly caFile: string | undefined;
  /** the client certificate (mTLS); set together with keyFile */
  readonly certFile: string | undefined;
  readonly keyFile: string | undefined;
  /** undefined: the host dialled */
  readonly serverName: string | undefined;
  /** COS_TLS_RELOAD_INTERVAL (seconds) in ms; 0: never */
  readonly reloadIntervalMs: number;
}

export interface WriteSideConfig {
  readonly host: string;
  readonly port: number;
  /** COS_WRITE_SIDE_PROTOCOL: gRPC or HTTP/JSON */
  readonly protocol: HandlerProtocol;
  /** COS_GRPC_CLIENT_POOL_SIZE: gRPC connections to the write handler, used round robin */
  readonly poolSize: number;
  /** COS_WRITE_SIDE_BREAKER_*: undefined when off */
  readonly breaker: BreakerConfig | undefined;
  readonly useTls: boolean;
  /** COS_WRITE_SIDE_TLS_*; set exactly when useTls */
  readonly tls: ClientTlsConfig | undefined;
  readonly validation: TypeValidationConfig;
  /** lower-cased request header names forwarded to the write handler */
  readonly propagatedHeaders: readonly string[];
  /** lower-cased request header names stored in each event's MetaData.headers */
  readonly persistedHeaders: readonly string[];
}

export interface TimeoutConfig {
  /** COS_COMMAND_HANDLER_TIMEOUT (seconds) in ms: the whole ProcessCommand */
  readonly commandMs: number;
  /** COS_GRPC_CALLS_TIMEOUT: the deadline of each handler call */
  readonly handlerCallMs: number;
}

export interface EntityConfig {
  /** COS_PASSIVATE_AFTER (seconds) in ms: an idle entity is dropped from memory after this */
  readonly passivateAfterMs: number;
  /** COS_MAX_ACTIVE_ENTITIES: most entities held in memory at once */
  readonly maxActive: number;
  /** COS_ENTITY_CACHE_MAX_BYTES: most serialized bytes of cached state and meta */
  readonly cacheMaxBytes: number;
  /** COS_ENTITY_MAILBOX_SIZE: commands of one entity queued or running; beyond, refused at once */
  readonly mailboxSize: number;
  /** COS_MAX_IN_FLIGHT_COMMANDS: commands queued or running in the process; beyond, refused at once */
  readonly maxInFlightCommands: number;
}

/** A circuit breaker around a handler's calls (COS_WRITE_SIDE_BREAKER_*, COS_READ_SIDE_BREAKER_*). */
export interface BreakerConfig {
  /** consecutive failures that open it, 1..100 */
  readonly maxFailures: number;
  /** a call slower than this fails (and counts), ms */
  readonly callTimeoutMs: number;
  /** open -> half-open (one trial call) after this, ms */
  readonly resetTimeoutMs: number;
}

/** COS_GRPC_KEEPALIVE_*: HTTP/2 PINGs on the outbound gRPC connections (handlers). */
export interface KeepaliveConfig {
  /** COS_GRPC_KEEPALIVE_ENABLED; off: a PING only every 30 s while calls are open, and before reusing an idle connection */
  readonly enabled: boolean;
  /** COS_GRPC_KEEPALIVE_TIME: ms between PINGs */
  readonly timeMs: number;
  /** COS_GRPC_KEEPALIVE_TIMEOUT: a PING unanswered this long drops the connection, ms */
  readonly timeoutMs: number;
  /** COS_GRPC_KEEPALIVE_WITHOUT_CALLS: PING idle connections too */
  readonly withoutCalls: boolean;
}

export interface ReadSideConfig {
  readonly readSideId: string;
  readonly host: string;
  readonly port: number;
  /** `protocol` / __PROTOCOL__<ID>: gRPC or HTTP/JSON */
  readonly protocol: HandlerProtocol;
  readonly useTls: boolean;
  /** tlsCaFile, tlsCertFile, tlsKeyFile, tlsServerName; set exactly when useTls */
  readonly tls: ClientTlsConfig | undefined;
  /** deadline of each HandleReadSide call */
  readonly timeoutMs: number;
  readonly autoStart: boolean;
  readonly enabled: boolean;
  readonly failurePolicy: FailurePolicy;
}

interface PublisherCommon {
  /** also its id in ReadSideManagerService and the read-side metrics; unique among read sides */
  readonly publisherId: string;
  /** broker URL (may hold a password: redacted in logs) */
  readonly url: string;
  /** the message payload: the serialized EventWrapper, or its proto3 JSON */
  readonly format: 'protobuf' | 'json';
  /** wait for the broker's acknowledgement before publishing again */
  readonly timeoutMs: number;
  readonly autoStart: boolean;
  readonly enabled: boolean;
}

/** One publisher: every persisted event to NATS JetStream, or to a RabbitMQ exchange. */
export type PublisherConfig =
  | (PublisherCommon & { readonly sink: 'nats'; readonly subject: string })
  | (PublisherCommon & { readonly sink: 'rabbitmq'; readonly exchange: string; readonly routingKey: string | undefined });

export interface ReadSidesConfig {
  /** COS_READ_SIDE_ENABLED */
  readonly enabled: boolean;
  /** every read side configured, whatever its own `enabled`; ids are unique */
  readonly readSides: readonly ReadSideConfig[];
  /** COS_READ_SIDE_BREAKER_*: one breaker per read side; undefined when off */
  readonly breaker: BreakerConfig | undefined;
}

/** COS_SERVER_PROTOCOL: which client front ends run. */
export const SERVER_PROTOCOLS = ['grpc', 'http', 'both'] as const;
export type ServerProtocol = (typeof SERVER_PROTOCOLS)[number];

/** The client-facing surfaces beside gRPC, and the types they render. */
export interface FrontEndsConfig {
  /** COS_SERVER_PROTOCOL: grpc (gRPC, gRPC-Web and Connect on COS_PORT), http (the HTTP/JSON front end), or both */
  readonly protocol: ServerProtocol;
  /** COS_HTTP_ADDRESS / COS_HTTP_PORT of the upstream-shaped HTTP/JSON front end; undefined when it is off */
  readonly http: { readonly address: string; readonly port: number } | undefined;
  /** COS_CORS_ALLOWED_ORIGINS: origins browsers may call from (`*`: any); empty: no CORS headers */
  readonly corsAllowedOrigins: readonly string[];
  /** COS_PROTO_DESCRIPTOR_SET: absolute paths of the user's descriptor sets (checked to parse at load) */
  readonly descriptorSetFiles: readonly string[];
}

export interface SubscriptionsConfig {
  /** COS_SUBSCRIPTION_ENABLED */
  readonly enabled: boolean;
  /** COS_SUBSCRIPTION_MAX_ACTIVE */
  readonly maxActive: number;
}

export interface TraceSamplerConfig {
  /** OTEL_TRACES_SAMPLER */
  readonly name: TraceSamplerName;
  /** OTEL_TRACES_SAMPLER_ARG, 0..1: the ratio of the traceidratio samplers (the others ignore it) */
  readonly ratio: number;
}

/** The span batching of the exporter (OTEL_BSP_*). */
export interface TraceBatchConfig {
  /** OTEL_BSP_SCHEDULE_DELAY: ms between two exports */
  readonly scheduleDelayMs: number;
  /** OTEL_BSP_EXPORT_TIMEOUT: ms an export may take before it is cancelled */
  readonly exportTimeoutMs: number;
  /** OTEL_BSP_MAX_QUEUE_SIZE: spans held for export; more are dropped */
  readonly maxQueueSize: number;
  /** OTEL_BSP_MAX_EXPORT_BATCH_SIZE: most spans in one export, at most maxQueueSize */
  readonly maxExportBatchSize: number;
}

export interface TelemetryConfig {
  readonly serviceName: string;
  readonly teamName: string | undefined;
  readonly traceHost: string;
  /** OTLP over HTTP: 4318 by default */
  readonly tracePort: number;
  /** OTEL_EXPORTER_OTLP_ENDPOINT; when set it is used instead of traceHost/tracePort */
  readonly otlpEndpoint: string | undefined;
  /** OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, the full traces URL; it wins over every other target */
  readonly otlpTracesEndpoint: string | undefined;
  /**
   * The OTLP/HTTP traces URL spans are exported to: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as is, else
   * OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces, else http://TRACE_HOST:TRACE_PORT/v1/traces when
   * either is set; undefined: no export.
   */
  readonly tracesEndpoint: string | undefined;
  /** OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else OTEL_EXPORTER_OTLP_PROTOCOL; http/protobuf by default */
  readonly tracesProtocol: OtlpProtocol;
  readonly tracesSampler: TraceSamplerConfig;
  readonly tracesBatch: TraceBatchConfig;
  readonly metricsPort: number;
  /** COS_METRICS_ADDRESS: the operations port's bind address; COS_ADDRESS when unset */
  readonly metricsAddress: string;
}

export interface ClusterConfig {
  readonly mode: DeploymentMode;
  readonly dockerServiceName: string;
  /** replicas to wait for: COS_DOCKER_REPLICA_COUNT or COS_KUBERNETES_REPLICA_COUNT by mode */
  readonly replicaCount: number;
  readonly podIp: string | undefined;
  readonly kubernetesAppLabel: string | undefined;
  /** COS_CLUSTER_SECRET; undefined: the one in the shared database (never log it) */
  readonly secret: string | undefined;
  /** COS_CLUSTER_MAX_CLOCK_SKEW (seconds) in ms */
  readonly maxClockSkewMs: number;
  /**
   * COS_CLUSTER_FAST_TAKEOVER: take the shards and read-side streams of a process whose database
   * session ended (killed, crashed) at once rather than when its leases expire (@chiefofstate/leases)
   */
  readonly fastTakeover: boolean;
  /**
   * How peers are dialled: over TLS when the listener has TLS (COS_TLS_CERT_FILE/KEY, also the
   * client certificate), with COS_CLUSTER_TLS_CA_FILE (else COS_TLS_CLIENT_CA_FILE) and
   * COS_CLUSTER_TLS_SERVER_NAME; undefined: plaintext.
   */
  readonly peerTls: ClientTlsConfig | undefined;
}

/** COS_TLS_*: the gRPC listener over TLS; paths absolute. */
export interface ListenerTlsConfig {
  /** COS_TLS_CERT_FILE */
  readonly certFile: string;
  /** COS_TLS_KEY_FILE */
  readonly keyFile: string;
  /** COS_TLS_CLIENT_CA_FILE: client certificates are verified against it (mTLS) */
  readonly clientCaFile: string | undefined;
  /** COS_TLS_CLIENT_AUTH; `required` when a client CA is set and this is unset */
  readonly clientAuth: ClientAuthMode;
}

/** What opens one service to callers. */
export interface ServiceCredentialsConfig {
  /** bearer tokens, one per line (absolute path) */
  readonly tokensFile: string | undefined;
  /** client-certificate identities (CN, DNS or URI names) */
  readonly clientNames: readonly string[];
}

/** Caller authentication; everything open when no COS_AUTH_* / COS_ADMIN_* is set. */
export interface CallerAuthConfig {
  /** ChiefOfStateService (COS_AUTH_TOKENS_FILE, COS_AUTH_CLIENT_NAMES); undefined: open */
  readonly api: ServiceCredentialsConfig | undefined;
  /**
   * ReadSideManagerService (COS_ADMIN_TOKENS_FILE, COS_ADMIN_CLIENT_NAMES); undefined when caller
   * authentication is off; with neither set while it is on: nobody may call it
   */
  readonly admin: ServiceCredentialsConfig | undefined;
  /** COS_CLUSTER_PEER_NAMES: identities a forwarding replica's verified certificate must have */
  readonly peerNames: readonly string[];
}

/** The listener's TLS, caller authentication and the metrics token (server-side security). */
export interface SecurityConfig {
  /** COS_TLS_RELOAD_INTERVAL (seconds) in ms: how often TLS and token files are re-read; 0 never */
  readonly reloadIntervalMs: number;
  /** undefined: cleartext HTTP/2 */
  readonly tls: ListenerTlsConfig | undefined;
  readonly auth: CallerAuthConfig;
  /** COS_METRICS_TOKEN_FILE: bearer tokens /metrics asks for (absolute path) */
  readonly metricsTokenFile: string | undefined;
}

export interface LogConfig {
  readonly level: LogLevel;
  readonly style: LogStyle;
}

export interface CosConfig {
  readonly server: ServerConfig;
  /** journal and snapshots */
  readonly store: StoreConfig;
  /** the same object as `store` when no COS_READ_SIDE_OFFSET_DB* variable is set */
  readonly readSideOffsetStore: StoreConfig;
  readonly kafka: KafkaConfig | undefined;
  /** COS_PUBLISHER_CONFIG: every publisher configured, whatever its own `enabled` */
  readonly publishers: readonly PublisherConfig[];
  readonly journal: JournalConfig;
  readonly snapshots: SnapshotConfig;
  /** power of two, 1..8192 */
  readonly numShards: number;
  readonly writeSide: WriteSideConfig;
  readonly timeouts: TimeoutConfig;
  /** COS_GRPC_KEEPALIVE_*: outbound gRPC connections */
  readonly keepalive: KeepaliveConfig;
  readonly entities: EntityConfig;
  readonly readSide: ReadSidesConfig;
  readonly subscriptions: SubscriptionsConfig;
  readonly frontEnds: FrontEndsConfig;
  readonly telemetry: TelemetryConfig;
  readonly cluster: ClusterConfig;
  readonly security: SecurityConfig;
  readonly log: LogConfig;
  /** tests only: undefined unless a COS_TEST_* variable is set */
  readonly testHooks?: TestHooksConfig;
}

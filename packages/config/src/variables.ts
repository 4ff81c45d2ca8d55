/**
 * Every variable COS reads, with its aliases, default and meaning. The single source for the
 * tables in README.md and docs/configuration.md (a test keeps them equal), for warnings about
 * unknown COS_* names, and for knowing which values are secrets.
 */
export interface ConfigVariable {
  readonly name: string;
  /** names from later COS releases meaning the same; `name` wins when both are set */
  readonly aliases: readonly string[];
  /** the default as shown to users */
  readonly default: string;
  readonly meaning: string;
  /** never shown in errors, warnings or redacted output */
  readonly secret?: boolean;
}

export const READ_SIDE_ENV_PREFIX = 'COS_READ_SIDE_CONFIG__';
export const PUBLISHER_ENV_PREFIX = 'COS_PUBLISHER_CONFIG__';

export const CONFIG_VARIABLES: readonly ConfigVariable[] = [
  // server
  v('COS_ADDRESS', [], '0.0.0.0', 'address the gRPC server binds'),
  v('COS_PORT', [], '9000', 'port of the gRPC server'),
  v('COS_GRPC_MAX_MESSAGE_BYTES', [], '4194304 (4 MiB)', 'largest gRPC message received or sent, in bytes'),
  v(
    'COS_GRPC_MAX_CONCURRENT_STREAMS',
    [],
    '256',
    'most calls open at once on one client connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS); clients queue the rest',
  ),
  v(
    'COS_GRPC_MAX_HEADER_BYTES',
    [],
    '65536 (64 KiB)',
    'largest request header list (metadata) in bytes, as HTTP/2 counts it; a larger one is refused at once with RESOURCE_EXHAUSTED',
  ),
  v(
    'COS_GRPC_RECEIVE_TIMEOUT',
    [],
    '10',
    'seconds a call may take to send its whole request after its headers (decimals allowed); a slower one fails with DEADLINE_EXCEEDED',
  ),
  v(
    'COS_GRPC_IDLE_TIMEOUT',
    [],
    '300',
    'seconds a client connection may pass without a frame before it is closed (GOAWAY, then cut after as long again); also bounds a connection that broke the HTTP/2 protocol',
  ),
  v(
    'COS_GRPC_SERVER_FAST_PATH',
    [],
    'true',
    "plain gRPC unary calls (ProcessCommand, GetState) are served by COS's own lean path, a fifth of the CPU, and Subscribe / SubscribeAll streams by ready frames, a tenth of the CPU per event; false: every gRPC call goes through Connect's stock handler (the same answers, proven by differential tests), should the lean paths ever be suspected",
  ),
  v(
    'COS_GRPC_CLIENT_FAST_PATH',
    [],
    'true',
    "calls to the write and read-side handlers and to peer replicas (and the images' health probe) use COS's own lean gRPC transport, a third of the CPU; false: Connect's stock gRPC transport (the same results, proven by differential tests)",
  ),
  // gRPC listener TLS and caller authentication (docs/security.md)
  v('COS_TLS_CERT_FILE', [], 'unset (cleartext)', "PEM certificate chain the gRPC port serves over TLS (HTTP/2, ALPN h2), needs COS_TLS_KEY_FILE; also this replica's client certificate towards its peers"),
  v('COS_TLS_KEY_FILE', [], 'unset', 'PEM private key of COS_TLS_CERT_FILE'),
  v(
    'COS_TLS_CLIENT_CA_FILE',
    [],
    'unset',
    'PEM CA certificates client certificates are verified against (mTLS); needs COS_TLS_CERT_FILE; the default of COS_CLUSTER_TLS_CA_FILE',
  ),
  v(
    'COS_TLS_CLIENT_AUTH',
    [],
    'required (with a client CA)',
    'required: a client without a valid certificate cannot connect; optional: it may (to present a bearer token), one with a certificate that does not verify is cut',
  ),
  v(
    'COS_TLS_RELOAD_INTERVAL',
    [],
    '10',
    'seconds between re-reads of every TLS and token file (decimals allowed; 0: never); a rotated file reaches new connections and calls without a restart',
  ),
  v(
    'COS_AUTH_TOKENS_FILE',
    [],
    'unset (open)',
    'file of bearer tokens (one per line, at least 16 characters) accepted on ChiefOfStateService; setting any COS_AUTH_* or COS_ADMIN_* turns caller authentication on',
  ),
  v(
    'COS_AUTH_CLIENT_NAMES',
    [],
    'unset',
    'comma-separated client-certificate identities (CN, DNS or URI name) accepted on ChiefOfStateService; needs COS_TLS_CLIENT_CA_FILE',
  ),
  v(
    'COS_ADMIN_TOKENS_FILE',
    [],
    'unset',
    'file of bearer tokens accepted on ReadSideManagerService (API credentials never are); with caller authentication on and no admin credential, that service refuses everyone',
  ),
  v(
    'COS_ADMIN_CLIENT_NAMES',
    [],
    'unset',
    'comma-separated client-certificate identities accepted on ReadSideManagerService; needs COS_TLS_CLIENT_CA_FILE',
  ),
  v(
    'COS_CLUSTER_PEER_NAMES',
    [],
    'unset',
    "comma-separated certificate identities of the replicas: a forwarded call is accepted only over a connection whose verified client certificate has one (besides the cluster secret's proof); needs COS_TLS_CLIENT_CA_FILE",
  ),
  // store
  v(
    'COS_POSTGRES_HOST',
    ['COS_DB_HOST'],
    'unset (embedded)',
    'journal, snapshot and read-side offset store host. Unset: an embedded PostgreSQL (PGlite) under COS_DATA_DIR, for one process only',
  ),
  v('COS_POSTGRES_PORT', ['COS_DB_PORT'], '5432', 'store port'),
  v('COS_POSTGRES_USER', ['COS_DB_USER'], 'postgres', 'store user'),
  { ...v('COS_POSTGRES_PASSWORD', ['COS_DB_PASSWORD'], 'changeme', 'store password (never logged)'), secret: true },
  v('COS_POSTGRES_DB', ['COS_DB_NAME'], 'postgres', 'store database'),
  v(
    'COS_POSTGRES_SCHEMA',
    ['COS_DB_SCHEMA'],
    'public',
    'store schema, created when missing; also used by the embedded store. A plain identifier: letters, digits, `_`, at most 63 characters',
  ),
  v('COS_DB_POOL_MAX_SIZE', [], '5', 'connections in the store pool, 1..1000 (also the offset store pool)'),
  v(
    'COS_DB_CONNECT_TIMEOUT',
    [],
    '5',
    'seconds to wait for a store connection, a new one or a free one of the pool (decimals allowed); also how long a probe of a store that is down may take',
  ),
  v(
    'COS_DB_STATEMENT_TIMEOUT',
    [],
    '5',
    "seconds a store statement may run (decimals allowed): PostgreSQL's statement_timeout, and, 0.5 s later, the client's own bound that also holds when the server does not answer at all. A journal append is bounded by its commands' deadline too",
  ),
  v(
    'COS_DB_IDLE_IN_TRANSACTION_TIMEOUT',
    [],
    '10',
    "seconds a store connection may sit idle inside a transaction before PostgreSQL ends it (idle_in_transaction_session_timeout; decimals allowed)",
  ),
  v(
    'COS_DB_POOL_MAX_WAITING',
    [],
    '1000',
    'most callers waiting for a store pool connection, 1..1000000; beyond, a call fails at once with UNAVAILABLE',
  ),
  // store TLS (libpq's sslmode meanings; docs/configuration.md "TLS to PostgreSQL")
  v(
    'COS_POSTGRES_SSL_MODE',
    [],
    'disable',
    "TLS to the store (and the offset store): disable, require (encrypted, the server's certificate unchecked unless COS_POSTGRES_SSL_ROOT_CERT is set, then as verify-ca), verify-ca (the certificate chains to COS_POSTGRES_SSL_ROOT_CERT) or verify-full (and names COS_POSTGRES_HOST). allow and prefer are refused: their fallback to plaintext can be forced by anyone on the path",
  ),
  v(
    'COS_POSTGRES_SSL_ROOT_CERT',
    [],
    'unset',
    "PEM file of the CA(s) the store's certificate must chain to (needed by verify-ca and verify-full), or `system` for Node's trusted public roots (verify-full only). Re-read every COS_TLS_RELOAD_INTERVAL",
  ),
  v(
    'COS_POSTGRES_SSL_CERT',
    [],
    'unset',
    'PEM file of the client certificate presented to the store (`cert` authentication in pg_hba.conf), with COS_POSTGRES_SSL_KEY. Re-read every COS_TLS_RELOAD_INTERVAL: new connections use a rotated one',
  ),
  v('COS_POSTGRES_SSL_KEY', [], 'unset', 'PEM file of the private key of COS_POSTGRES_SSL_CERT (both or neither)'),
  v('COS_DATA_DIR', [], './.cos-data', 'directory of the embedded store, relative to the working directory'),
  v(
    'COS_READ_SIDE_OFFSET_DB_HOST',
    [],
    "journal's",
    'host of a separate database for read-side offsets. Each COS_READ_SIDE_OFFSET_DB* variable left unset takes the journal store value',
  ),
  v('COS_READ_SIDE_OFFSET_DB_PORT', [], "journal's", 'offset store port'),
  v('COS_READ_SIDE_OFFSET_DB_USER', [], "journal's", 'offset store user'),
  { ...v('COS_READ_SIDE_OFFSET_DB_PASSWORD', [], "journal's", 'offset store password (never logged)'), secret: true },
  v('COS_READ_SIDE_OFFSET_DB', [], "journal's", 'offset store database'),
  v('COS_READ_SIDE_OFFSET_DB_SCHEMA', [], "journal's", 'offset store schema (also applies to the embedded store)'),
  v(
    'COS_KAFKA_BROKER',
    [],
    'unset',
    'Kafka bootstrap servers, comma separated `host:port`, to publish every persisted event to. No Kafka sink yet: cos-server refuses to start when it is set, rather than leave the events unpublished without a word; publish to NATS JetStream or RabbitMQ with COS_PUBLISHER_CONFIG',
  ),
  v(
    'COS_PUBLISHER_CONFIG',
    [],
    'unset',
    'a YAML file, or a directory of `.yaml` / `.yml` files; each YAML document one publisher of every persisted event to NATS JetStream or RabbitMQ (see below)',
  ),
  v(
    `${PUBLISHER_ENV_PREFIX}<SETTING>__<PUBLISHER_ID>`,
    [],
    '',
    'one publisher per id by env vars; SETTING is SINK, URL, SUBJECT, EXCHANGE, ROUTING_KEY, FORMAT, TIMEOUT, AUTO_START or ENABLED',
  ),
  // journal and snapshots
  v('COS_EVENTS_BATCH_THRESHOLD', [], '100', 'most events written to the journal in one batched transaction, >= 1'),
  v(
    'COS_JOURNAL_MAX_QUEUED_APPENDS',
    [],
    '8192',
    'most journal appends waiting for their batch, >= 1; beyond, an append is refused at once (RESOURCE_EXHAUSTED). Each entity has at most one append queued, so this is reached only with more commands in flight than this',
  ),
  v('COS_JOURNAL_LOGICAL_DELETION', [], 'false', 'delete events older than the retained snapshots'),
  // retry-safe commands
  v(
    'COS_IDEMPOTENCY_RETENTION',
    [],
    '86400 (24 h)',
    'seconds an idempotency key (x-cos-idempotency-key) answers a retry with its first outcome (decimals allowed, at most 2147483); older keys are removed in the background',
  ),
  v('COS_DISABLE_SNAPSHOT', [], 'false', 'take no snapshots'),
  v('COS_SNAPSHOT_FREQUENCY', [], '100', 'snapshot every N events, >= 1'),
  v('COS_NUM_SNAPSHOTS_TO_RETAIN', [], '2', 'snapshots kept per entity, >= 1'),
  v('COS_NUM_SHARDS', [], '16', 'shards = event tags = read-side partitions; a power of two, 1..8192 (at most 10000)'),
  // write side
  v('WRITE_SIDE_HANDLER_SERVICE_HOST', ['COS_WRITE_SIDE_HOST'], 'required', "host of the user's WriteSideHandlerService"),
  v('WRITE_SIDE_HANDLER_SERVICE_PORT', ['COS_WRITE_SIDE_PORT'], 'required', 'its port'),
  v('COS_WRITE_SIDE_USE_TLS', [], 'false', 'TLS to the write handler'),
  v(
    'COS_WRITE_SIDE_PROTOCOL',
    [],
    'grpc',
    'how COS calls the write handler: grpc (WriteSideHandlerService) or http (JSON over HTTP/1.1: POST /v1/writeside/handleCommand and /v1/writeside/handleEvent; https with COS_WRITE_SIDE_USE_TLS); both is refused',
  ),
  v(
    'COS_GRPC_CLIENT_POOL_SIZE',
    [],
    '1',
    'gRPC (HTTP/2) connections to the write handler, 1..64, used round robin (a handler behind a connection-level load balancer sees them all)',
  ),
  v(
    'COS_WRITE_SIDE_BREAKER_ENABLED',
    [],
    'false',
    'a circuit breaker around write-handler calls: after COS_WRITE_SIDE_BREAKER_MAX_FAILURES failures in a row, commands fail at once with UNAVAILABLE until a trial call succeeds; /readyz answers 503 while it is open',
  ),
  v('COS_WRITE_SIDE_BREAKER_MAX_FAILURES', [], '5', 'consecutive failed calls (unreachable, timed out, or UNAVAILABLE / INTERNAL / UNKNOWN / DEADLINE_EXCEEDED from the handler) that open the breaker, 1..100'),
  v(
    'COS_WRITE_SIDE_BREAKER_CALL_TIMEOUT',
    [],
    '60s',
    'a write-handler call taking longer fails and counts as a failure, at most 5m (a duration: 500ms, 30s, 1m; a bare number is seconds); the command deadline still applies',
  ),
  v('COS_WRITE_SIDE_BREAKER_RESET_TIMEOUT', [], '1m', 'an open breaker lets one trial call through after this, 1s..1h; its success closes it, its failure opens it again'),
  v(
    'COS_READ_SIDE_BREAKER_ENABLED',
    [],
    'false',
    'a circuit breaker around each read side\'s handler calls; while it is open the shards wait for it (the failure policy\'s retries are not used up)',
  ),
  v('COS_READ_SIDE_BREAKER_MAX_FAILURES', [], '5', 'as COS_WRITE_SIDE_BREAKER_MAX_FAILURES, for read-side handler calls'),
  v('COS_READ_SIDE_BREAKER_CALL_TIMEOUT', [], '10s', 'as COS_WRITE_SIDE_BREAKER_CALL_TIMEOUT, for read-side handler calls (the read side\'s own timeout still applies)'),
  v('COS_READ_SIDE_BREAKER_RESET_TIMEOUT', [], '1m', 'as COS_WRITE_SIDE_BREAKER_RESET_TIMEOUT, for read-side handler calls'),
  v(
    'COS_GRPC_KEEPALIVE_ENABLED',
    [],
    'false',
    'HTTP/2 PING keepalive on the gRPC connections to the handlers, with the timings below; off: a PING every 30 s while calls are open (10 s to answer) and before reusing a connection idle for longer',
  ),
  v('COS_GRPC_KEEPALIVE_TIME', [], '120s', 'time between PINGs, at least 1s (a duration, or a bare number of seconds)'),
  v('COS_GRPC_KEEPALIVE_TIMEOUT', [], '60s', 'a PING not answered within this drops the connection (its calls fail with UNAVAILABLE, the next call opens a new one), at least 1s'),
  v('COS_GRPC_KEEPALIVE_WITHOUT_CALLS', [], 'true', 'PING connections without open calls too, so a dead connection is found before a command needs it'),
  // write handler TLS (client-tls); every file needs COS_WRITE_SIDE_USE_TLS=true
  v(
    'COS_WRITE_SIDE_TLS_CA_FILE',
    [],
    "unset (the system's root CAs)",
    "PEM file of the CA the write handler's certificate must chain to; re-read every COS_TLS_RELOAD_INTERVAL",
  ),
  v(
    'COS_WRITE_SIDE_TLS_CERT_FILE',
    [],
    'unset',
    'PEM client certificate presented to the write handler (mTLS), with COS_WRITE_SIDE_TLS_KEY_FILE; re-read every COS_TLS_RELOAD_INTERVAL, new connections use the new one',
  ),
  v('COS_WRITE_SIDE_TLS_KEY_FILE', [], 'unset', 'PEM private key of COS_WRITE_SIDE_TLS_CERT_FILE'),
  v(
    'COS_WRITE_SIDE_TLS_SERVER_NAME',
    [],
    'the handler host',
    "name the write handler's certificate must carry, also sent as SNI (an IP host must otherwise be in the certificate's IP SANs)",
  ),
  v(
    'HANDLER_SERVICE_STATE_PROTO',
    ['COS_WRITE_SIDE_STATE_PROTOS'],
    'unset',
    'allowed state types, `package.Message`, comma separated; set: state types are validated',
  ),
  v(
    'HANDLER_SERVICE_EVENTS_PROTOS',
    ['COS_WRITE_SIDE_EVENT_PROTOS'],
    'unset',
    'allowed event types, `package.Message`, comma separated; set: event types are validated',
  ),
  v(
    'COS_WRITE_SIDE_PROTO_VALIDATION',
    [],
    'on when a type list is set',
    'force type validation on (true) or off (false)',
  ),
  v(
    'COS_WRITE_SIDE_PROPAGATED_HEADERS',
    [],
    'unset',
    'request headers forwarded to the write handler, comma separated (case-insensitive)',
  ),
  v(
    'COS_WRITE_PERSISTED_HEADERS',
    [],
    'unset',
    "request headers stored in each event's MetaData.headers, comma separated (case-insensitive)",
  ),
  // timeouts and entities
  v('COS_COMMAND_HANDLER_TIMEOUT', [], '5', 'seconds a ProcessCommand may take in all (decimals allowed)'),
  v('COS_GRPC_CALLS_TIMEOUT', [], '5000', 'deadline of each handler call, ms; also the default read side timeout'),
  v('COS_PASSIVATE_AFTER', [], '120', 'seconds an idle entity stays in memory (decimals allowed)'),
  v('COS_MAX_ACTIVE_ENTITIES', [], '100000', 'most entities held in memory at once'),
  v(
    'COS_ENTITY_CACHE_MAX_BYTES',
    [],
    '268435456 (256 MiB)',
    'most bytes of entity state and meta (serialized size) held in memory; beyond, the least recently used idle entities leave memory',
  ),
  v(
    'COS_ENTITY_MAILBOX_SIZE',
    [],
    '256',
    'most commands of one entity queued or running, >= 1; beyond, a command is refused at once (RESOURCE_EXHAUSTED)',
  ),
  v(
    'COS_MAX_IN_FLIGHT_COMMANDS',
    [],
    '4096',
    'most commands queued or running in the process, all entities together, >= 1; beyond, a command is refused at once (RESOURCE_EXHAUSTED)',
  ),
  // read sides
  v('COS_READ_SIDE_ENABLED', [], 'false', 'run the read sides'),
  v(
    'READ_SIDE_HANDLER_SERVICE_HOST',
    [],
    'unset',
    'host of the default read side (read side id `default`); required when the read side is on and no other read side is configured',
  ),
  v('READ_SIDE_HANDLER_SERVICE_PORT', [], 'unset', 'its port'),
  v(
    'COS_READ_SIDE_CONFIG',
    [],
    'unset',
    'a YAML file, or a directory of `.yaml` / `.yml` files; each YAML document one read side (see below)',
  ),
  v(
    `${READ_SIDE_ENV_PREFIX}<SETTING>__<READSIDE_ID>`,
    [],
    '',
    'one read side per id by env vars; SETTING is HOST, PORT, PROTOCOL, USE_TLS, TLS_CA_FILE, TLS_CERT_FILE, TLS_KEY_FILE, TLS_SERVER_NAME, TIMEOUT, AUTO_START, ENABLED or FAILURE_POLICY',
  ),
  // front ends and types (docs/http-json.md)
  v(
    'COS_SERVER_PROTOCOL',
    [],
    'grpc',
    'which client front ends run: grpc (gRPC, gRPC-Web and Connect on COS_PORT, over HTTP/2 and HTTP/1.1), http (the upstream-shaped HTTP/JSON front end on COS_HTTP_PORT) or both',
  ),
  v('COS_HTTP_ADDRESS', [], 'COS_ADDRESS', 'address the HTTP/JSON front end binds (COS_SERVER_PROTOCOL http or both)'),
  v('COS_HTTP_PORT', [], '9001', 'port of the HTTP/JSON front end (HTTP/1.1 and HTTP/2, with the TLS and caller authentication of the gRPC port)'),
  v(
    'COS_PROTO_DESCRIPTOR_SET',
    [],
    'unset',
    'comma-separated descriptor set files of your types (buf build -o types.binpb): JSON shows Any fields of these types as proto3 JSON with @type (others as base64 of the serialized Any), and server reflection describes them; a missing or broken file stops the start',
  ),
  v(
    'COS_CORS_ALLOWED_ORIGINS',
    [],
    'unset (no CORS)',
    'comma-separated browser origins (https://app.example.com) allowed to call the gRPC port (Connect, gRPC-Web) and the HTTP/JSON front end from another origin, or *',
  ),
  // subscriptions
  v(
    'COS_SUBSCRIPTION_ENABLED',
    [],
    'false',
    'serve Subscribe, SubscribeAll, Unsubscribe and UnsubscribeAll (events streamed to clients, with catch-up from a revision or offset); off: UNIMPLEMENTED',
  ),
  v(
    'COS_SUBSCRIPTION_MAX_ACTIVE',
    [],
    '1000',
    'most subscriptions open at once on one replica, >= 1; beyond, a new one is refused at once (RESOURCE_EXHAUSTED)',
  ),
  // telemetry
  v('COS_SERVICE_NAME', ['OTEL_SERVICE_NAME'], 'chiefofstate', 'service name in traces, metrics and logs'),
  v('TEAM_NAME', [], 'unset', 'team, added to traces as a resource attribute'),
  v('TRACE_HOST', [], 'localhost', 'trace collector host (OpenTelemetry OTLP over HTTP; Jaeger accepts it)'),
  v('TRACE_PORT', [], '4318', 'trace collector port: OTLP over HTTP (the original used 14268, Jaeger HTTP Thrift)'),
  v(
    'OTEL_EXPORTER_OTLP_ENDPOINT',
    [],
    'unset',
    'standard OpenTelemetry OTLP endpoint, an http(s) URL to which `/v1/traces` is appended; when set it is used instead of TRACE_HOST/TRACE_PORT',
  ),
  v(
    'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT',
    [],
    'unset',
    'the full OTLP traces URL, used as is; when set it is used instead of OTEL_EXPORTER_OTLP_ENDPOINT and TRACE_HOST/TRACE_PORT',
  ),
  v(
    'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL',
    [],
    'as OTEL_EXPORTER_OTLP_PROTOCOL',
    'how traces are exported: `http/protobuf` or `http/json` (case-insensitive; `grpc` is not supported)',
  ),
  v('OTEL_EXPORTER_OTLP_PROTOCOL', [], 'http/protobuf', 'the same for every signal; traces use it when OTEL_EXPORTER_OTLP_TRACES_PROTOCOL is unset'),
  v(
    'OTEL_TRACES_SAMPLER',
    [],
    'parentbased_always_on',
    'which traces are recorded: always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio (case-insensitive); parentbased_* follow the sampled flag of the caller\'s traceparent and apply the rest to new traces',
  ),
  v('OTEL_TRACES_SAMPLER_ARG', [], '1', 'the ratio of traces the traceidratio samplers record, 0..1 (ignored by the others)'),
  v('OTEL_BSP_SCHEDULE_DELAY', [], '5000', 'ms between two span exports'),
  v('OTEL_BSP_EXPORT_TIMEOUT', [], '30000', 'ms a span export may take before it is cancelled'),
  v('OTEL_BSP_MAX_QUEUE_SIZE', [], '2048', 'spans waiting for export at most; more are dropped'),
  v(
    'OTEL_BSP_MAX_EXPORT_BATCH_SIZE',
    [],
    '512 (at most the queue size)',
    'spans in one export at most; not more than OTEL_BSP_MAX_QUEUE_SIZE',
  ),
  v('COS_METRICS_PORT', [], '9102', 'port of the Prometheus metrics endpoint'),
  v('COS_METRICS_ADDRESS', [], 'COS_ADDRESS', 'address the operations port (/metrics, /healthz, /readyz) binds'),
  v(
    'COS_METRICS_TOKEN_FILE',
    [],
    'unset (open)',
    'file of bearer tokens (one per line) /metrics asks for (401 otherwise); /healthz and /readyz stay open',
  ),
  // cluster
  v('COS_DEPLOYMENT_MODE', [], 'docker', 'docker or kubernetes (case-insensitive)'),
  v(
    'COS_DOCKER_SERVICE_NAME',
    [],
    'chiefofstate',
    'name of the service in docker compose; accepted for compatibility: replicas find each other through their shared PostgreSQL',
  ),
  v(
    'COS_DOCKER_REPLICA_COUNT',
    ['COS_REPLICA_COUNT'],
    '1',
    'docker mode: serve once this many replicas have joined (more than 1 needs COS_POSTGRES_HOST)',
  ),
  v(
    'COS_KUBERNETES_REPLICA_COUNT',
    ['COS_REPLICA_COUNT'],
    '1',
    "kubernetes mode: the deployment's replica count; serve once this many replicas have joined (more than 1 needs COS_POSTGRES_HOST)",
  ),
  v(
    'POD_IP',
    [],
    'unset',
    "this pod's IP address: other replicas reach this one there, on COS_PORT; unset: the first non-loopback IPv4 address",
  ),
  {
    ...v(
      'COS_CLUSTER_SECRET',
      [],
      'unset',
      "secret the replicas prove forwarded calls with (at least 16 characters; never logged); unset: a random one kept in the shared database's cos_cluster_secret table",
    ),
    secret: true,
  },
  v(
    'COS_CLUSTER_MAX_CLOCK_SKEW',
    [],
    '30',
    "seconds a forwarded call's proof may be off this replica's clock (decimals allowed)",
  ),
  v(
    'COS_CLUSTER_FAST_TAKEOVER',
    [],
    'true',
    "take the shards and read-side streams of a process whose database session ended (killed, crashed) at once (each process holds a lock on a PostgreSQL connection of its own); false: when its leases expire (COS_CLUSTER_FAST_TAKEOVER=false behind a pooler that does not keep sessions, e.g. PgBouncer in transaction mode)",
  ),
  // peer TLS (client-tls): peers are dialled over TLS when COS_TLS_CERT_FILE is set
  v(
    'COS_CLUSTER_TLS_CA_FILE',
    [],
    'COS_TLS_CLIENT_CA_FILE',
    "PEM file of the CA the other replicas' certificates must chain to when forwarding to them over TLS (unset with COS_TLS_CLIENT_CA_FILE unset: the system's root CAs); needs COS_TLS_CERT_FILE",
  ),
  v(
    'COS_CLUSTER_TLS_SERVER_NAME',
    [],
    "unset (the peer's IP)",
    "name the other replicas' certificates must carry when forwarding to them over TLS; unset: the certificate must name the pod IP dialled; needs COS_TLS_CERT_FILE",
  ),
  v(
    'COS_KUBERNETES_APP_LABEL',
    [],
    'unset',
    'pod label shared by the replicas; accepted for compatibility: replicas find each other through their shared PostgreSQL',
  ),
  // testing only
  v(
    'COS_TEST_KILL_AFTER_COMMIT',
    [],
    'unset',
    'TESTS ONLY, never in production: an entity id; the process kills itself (SIGKILL) right after an append of that entity commits, before the reply, to prove a retry with an idempotency key gets the original reply',
  ),
  // logging
  v('LOG_LEVEL', [], 'info', 'trace, debug, info, warn or error (case-insensitive)'),
  v('LOG_STYLE', [], 'JSON', 'JSON or SIMPLE (human readable), case-insensitive'),
];

function v(name: string, aliases: readonly string[], def: string, meaning: string): ConfigVariable {
  return { name, aliases, default: def, meaning };
}

/** Names (documented and alias) whose values are secrets. */
export const SECRET_VARIABLES: ReadonlySet<string> = new Set(
  CONFIG_VARIABLES.filter((variable) => variable.secret).flatMap((variable) => [variable.name, ...variable.aliases]),
);

/** Every exact name COS reads. */
export const KNOWN_VARIABLES: ReadonlySet<string> = new Set(
  CONFIG_VARIABLES.flatMap((variable) => [variable.name, ...variable.aliases]).filter((name) => !name.includes('<')),
);

/** The variable table as Markdown, as it appears in the READMEs. */
export function formatVariableTable(): string {
  const cell = (text: string) => text.replaceAll('|', '\\|');
  const code = (name: string) => `\`${name}\``;
  const rows = CONFIG_VARIABLES.map(
    (variable) =>
      `| ${code(variable.name)} | ${variable.aliases.map(code).join(', ')} | ${cell(variable.default)} | ${cell(variable.meaning)} |`,
  );
  return ['| variable | alias | default | meaning |', '|---|---|---|---|', ...rows].join('\n');
}

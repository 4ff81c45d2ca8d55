import { resolve } from 'node:path';
import { ConfigError } from '@chiefofstate/core';
import { describe, expect, it } from 'vitest';
import { loadConfig } from './load-config.js';
import { CWD, REQUIRED, configErrorOf, load, problemsOf } from './test-support/load.js';
import type { CosConfig } from './types.js';
import { CONFIG_VARIABLES } from './variables.js';

describe('defaults', () => {
  it('gives every documented default with only the write handler set', () => {
    const { config, warnings } = load({});
    expect(warnings).toEqual([]);
    expect(config).toEqual({
      server: {
        address: '0.0.0.0',
        port: 9000,
        maxMessageBytes: 4 * 1024 * 1024,
        maxConcurrentStreams: 256,
        maxHeaderBytes: 64 * 1024,
        receiveTimeoutMs: 10_000,
        idleTimeoutMs: 300_000,
        unaryFastPath: true,
        clientFastTransport: true,
      },
      store: { kind: 'embedded', dataDir: resolve(CWD, '.cos-data'), schema: 'public' },
      readSideOffsetStore: { kind: 'embedded', dataDir: resolve(CWD, '.cos-data'), schema: 'public' },
      kafka: undefined,
      publishers: [],
      journal: { eventsBatchThreshold: 100, logicalDeletion: false, maxQueuedAppends: 8192, idempotencyRetentionMs: 86_400_000 },
      snapshots: { enabled: true, frequency: 100, retain: 2 },
      numShards: 16,
      writeSide: {
        host: 'handler',
        port: 50051,
        protocol: 'grpc',
        poolSize: 1,
        breaker: undefined,
        useTls: false,
        tls: undefined,
        validation: { enabled: false, stateTypes: [], eventTypes: [] },
        propagatedHeaders: [],
        persistedHeaders: [],
      },
      timeouts: { commandMs: 5000, handlerCallMs: 5000 },
      keepalive: { enabled: false, timeMs: 120_000, timeoutMs: 60_000, withoutCalls: true },
      entities: {
        passivateAfterMs: 120_000,
        maxActive: 100_000,
        cacheMaxBytes: 268_435_456,
        mailboxSize: 256,
        maxInFlightCommands: 4096,
      },
      readSide: { enabled: false, readSides: [], breaker: undefined },
      subscriptions: { enabled: false, maxActive: 1000 },
      frontEnds: { protocol: 'grpc', http: undefined, corsAllowedOrigins: [], descriptorSetFiles: [] },
      telemetry: {
        serviceName: 'chiefofstate',
        teamName: undefined,
        traceHost: 'localhost',
        tracePort: 4318,
        otlpEndpoint: undefined,
        otlpTracesEndpoint: undefined,
        tracesEndpoint: undefined,
        tracesProtocol: 'http/protobuf',
        tracesSampler: { name: 'parentbased_always_on', ratio: 1 },
        tracesBatch: { scheduleDelayMs: 5000, exportTimeoutMs: 30_000, maxQueueSize: 2048, maxExportBatchSize: 512 },
        metricsPort: 9102,
        metricsAddress: '0.0.0.0',
      },
      cluster: {
        mode: 'docker',
        dockerServiceName: 'chiefofstate',
        replicaCount: 1,
        podIp: undefined,
        kubernetesAppLabel: undefined,
        secret: undefined,
        peerTls: undefined,
        maxClockSkewMs: 30_000,
        fastTakeover: true,
      },
      security: {
        reloadIntervalMs: 10_000,
        tls: undefined,
        auth: { api: undefined, admin: undefined, peerNames: [] },
        metricsTokenFile: undefined,
      },
      log: { level: 'info', style: 'JSON' },
    } satisfies CosConfig);
  });

  it('uses the same object for the offset store when no COS_READ_SIDE_OFFSET_DB* is set', () => {
    const { config } = load({ COS_POSTGRES_HOST: 'db' });
    expect(config.readSideOffsetStore).toBe(config.store);
  });

  it('gives the postgres defaults once COS_POSTGRES_HOST is set', () => {
    expect(load({ COS_POSTGRES_HOST: 'db' }).config.store).toEqual({
      kind: 'postgres',
      host: 'db',
      port: 5432,
      user: 'postgres',
      password: 'changeme',
      database: 'postgres',
      schema: 'public',
      poolMax: 5,
      connectTimeoutMs: 5000,
      statementTimeoutMs: 5000,
      idleInTransactionTimeoutMs: 10_000,
      poolMaxWaiting: 1000,
    });
  });

  it('does not read process.env', () => {
    process.env['COS_PORT'] = '1234';
    try {
      expect(load({}).config.server.port).toBe(9000);
    } finally {
      delete process.env['COS_PORT'];
    }
  });

  it('treats empty and blank values as unset', () => {
    const { config } = load({ COS_PORT: '', COS_POSTGRES_HOST: '  ', LOG_LEVEL: '' });
    expect(config.server.port).toBe(9000);
    expect(config.store.kind).toBe('embedded');
    expect(config.log.level).toBe('info');
  });
});

/**
 * One row per variable: the environment, where the value lands, and what it must be. A test
 * below checks that every name in CONFIG_VARIABLES (and every alias) has a row.
 */
const PG = { COS_POSTGRES_HOST: 'db' };
const TLS = { COS_TLS_CERT_FILE: '/tls/tls.crt', COS_TLS_KEY_FILE: '/tls/tls.key' } as const;
const MTLS = { ...TLS, COS_TLS_CLIENT_CA_FILE: '/tls/ca.crt' } as const;

const ROWS: readonly [Record<string, string>, (config: CosConfig) => unknown, unknown][] = [
  [{ COS_ADDRESS: '127.0.0.1' }, (c) => c.server.address, '127.0.0.1'],
  [{ COS_PORT: '9100' }, (c) => c.server.port, 9100],
  [{ COS_GRPC_MAX_MESSAGE_BYTES: '1048576' }, (c) => c.server.maxMessageBytes, 1_048_576],
  [{ COS_GRPC_MAX_CONCURRENT_STREAMS: '32' }, (c) => c.server.maxConcurrentStreams, 32],
  [{ COS_GRPC_MAX_HEADER_BYTES: '16384' }, (c) => c.server.maxHeaderBytes, 16_384],
  [{ COS_GRPC_RECEIVE_TIMEOUT: '2.5' }, (c) => c.server.receiveTimeoutMs, 2500],
  [{ COS_GRPC_IDLE_TIMEOUT: '60' }, (c) => c.server.idleTimeoutMs, 60_000],
  [{ COS_GRPC_SERVER_FAST_PATH: 'false' }, (c) => c.server.unaryFastPath, false],
  [{ COS_GRPC_CLIENT_FAST_PATH: 'false' }, (c) => c.server.clientFastTransport, false],
  // listener TLS and caller authentication (more in security.spec.ts)
  [{ COS_TLS_CERT_FILE: 'tls/tls.crt', COS_TLS_KEY_FILE: '/tls/tls.key' }, (c) => c.security.tls?.certFile, '/srv/cos/tls/tls.crt'],
  [{ COS_TLS_KEY_FILE: '/tls/tls.key', COS_TLS_CERT_FILE: '/tls/tls.crt' }, (c) => c.security.tls?.keyFile, '/tls/tls.key'],
  [{ ...TLS, COS_TLS_CLIENT_CA_FILE: '/tls/ca.crt' }, (c) => c.security.tls?.clientCaFile, '/tls/ca.crt'],
  [{ ...TLS, COS_TLS_CLIENT_AUTH: 'Optional', COS_TLS_CLIENT_CA_FILE: '/tls/ca.crt' }, (c) => c.security.tls?.clientAuth, 'optional'],
  [{ COS_TLS_RELOAD_INTERVAL: '0' }, (c) => c.security.reloadIntervalMs, 0],
  [{ ...TLS, COS_AUTH_TOKENS_FILE: '/auth/tokens' }, (c) => c.security.auth.api, { tokensFile: '/auth/tokens', clientNames: [] }],
  [{ ...MTLS, COS_AUTH_CLIENT_NAMES: 'app, spiffe://x/app' }, (c) => c.security.auth.api?.clientNames, ['app', 'spiffe://x/app']],
  [{ ...TLS, COS_ADMIN_TOKENS_FILE: '/auth/admin' }, (c) => c.security.auth.admin?.tokensFile, '/auth/admin'],
  [{ ...MTLS, COS_ADMIN_CLIENT_NAMES: 'ops' }, (c) => c.security.auth.admin?.clientNames, ['ops']],
  [{ ...MTLS, COS_CLUSTER_PEER_NAMES: 'cos-0,cos-1' }, (c) => c.security.auth.peerNames, ['cos-0', 'cos-1']],
  [{ COS_POSTGRES_HOST: 'pg.internal' }, (c) => c.store.kind === 'postgres' && c.store.host, 'pg.internal'],
  [{ COS_DB_HOST: 'pg.internal' }, (c) => c.store.kind === 'postgres' && c.store.host, 'pg.internal'],
  [{ ...PG, COS_POSTGRES_PORT: '6432' }, (c) => c.store.kind === 'postgres' && c.store.port, 6432],
  [{ ...PG, COS_DB_PORT: '6432' }, (c) => c.store.kind === 'postgres' && c.store.port, 6432],
  [{ ...PG, COS_POSTGRES_USER: 'cos' }, (c) => c.store.kind === 'postgres' && c.store.user, 'cos'],
  [{ ...PG, COS_DB_USER: 'cos' }, (c) => c.store.kind === 'postgres' && c.store.user, 'cos'],
  [{ ...PG, COS_POSTGRES_PASSWORD: ' s3cret ' }, (c) => c.store.kind === 'postgres' && c.store.password, ' s3cret '],
  [{ ...PG, COS_DB_PASSWORD: 's3cret' }, (c) => c.store.kind === 'postgres' && c.store.password, 's3cret'],
  [{ ...PG, COS_POSTGRES_DB: 'events' }, (c) => c.store.kind === 'postgres' && c.store.database, 'events'],
  [{ ...PG, COS_DB_NAME: 'events' }, (c) => c.store.kind === 'postgres' && c.store.database, 'events'],
  [{ COS_POSTGRES_SCHEMA: 'cos_1' }, (c) => c.store.schema, 'cos_1'],
  [{ COS_DB_SCHEMA: 'cos_1' }, (c) => c.store.schema, 'cos_1'],
  [{ ...PG, COS_DB_POOL_MAX_SIZE: '20' }, (c) => c.store.kind === 'postgres' && c.store.poolMax, 20],
  [{ ...PG }, (c) => c.store.kind === 'postgres' && c.store.connectTimeoutMs, 5000],
  [{ ...PG, COS_DB_CONNECT_TIMEOUT: '1.5' }, (c) => c.store.kind === 'postgres' && c.store.connectTimeoutMs, 1500],
  [{ ...PG }, (c) => c.store.kind === 'postgres' && c.store.statementTimeoutMs, 5000],
  [{ ...PG, COS_DB_STATEMENT_TIMEOUT: '30' }, (c) => c.store.kind === 'postgres' && c.store.statementTimeoutMs, 30_000],
  [{ ...PG }, (c) => c.store.kind === 'postgres' && c.store.idleInTransactionTimeoutMs, 10_000],
  [{ ...PG, COS_DB_IDLE_IN_TRANSACTION_TIMEOUT: '60' }, (c) => c.store.kind === 'postgres' && c.store.idleInTransactionTimeoutMs, 60_000],
  [{ ...PG }, (c) => c.store.kind === 'postgres' && c.store.poolMaxWaiting, 1000],
  [{ ...PG, COS_DB_POOL_MAX_WAITING: '50' }, (c) => c.store.kind === 'postgres' && c.store.poolMaxWaiting, 50],
  // store TLS (more in postgres-tls.spec.ts)
  [{ ...PG, COS_POSTGRES_SSL_MODE: 'require' }, (c) => c.store.kind === 'postgres' && c.store.tls?.mode, 'require'],
  [
    { ...PG, COS_POSTGRES_SSL_MODE: 'verify-full', COS_POSTGRES_SSL_ROOT_CERT: '/tls/ca.crt' },
    (c) => c.store.kind === 'postgres' && c.store.tls?.rootCertFile,
    '/tls/ca.crt',
  ],
  [
    { ...PG, COS_POSTGRES_SSL_MODE: 'require', COS_POSTGRES_SSL_CERT: 'c.crt', COS_POSTGRES_SSL_KEY: 'c.key' },
    (c) => c.store.kind === 'postgres' && [c.store.tls?.certFile, c.store.tls?.keyFile],
    [resolve(CWD, 'c.crt'), resolve(CWD, 'c.key')],
  ],
  [
    { ...PG, COS_POSTGRES_SSL_MODE: 'require', COS_TLS_RELOAD_INTERVAL: '30' },
    (c) => c.store.kind === 'postgres' && c.store.tls?.reloadIntervalMs,
    30_000,
  ],
  [{ COS_DATA_DIR: 'data/cos' }, (c) => c.store.kind === 'embedded' && c.store.dataDir, resolve(CWD, 'data/cos')],
  [{ COS_DATA_DIR: '/var/lib/cos' }, (c) => c.store.kind === 'embedded' && c.store.dataDir, '/var/lib/cos'],
  [{ COS_KAFKA_BROKER: 'k1:9092, k2:9093' }, (c) => c.kafka, { brokers: ['k1:9092', 'k2:9093'] }],
  [{ COS_EVENTS_BATCH_THRESHOLD: '1' }, (c) => c.journal.eventsBatchThreshold, 1],
  [{ COS_JOURNAL_LOGICAL_DELETION: 'TRUE' }, (c) => c.journal.logicalDeletion, true],
  [{ COS_DISABLE_SNAPSHOT: '1' }, (c) => c.snapshots.enabled, false],
  [{ COS_SNAPSHOT_FREQUENCY: '7' }, (c) => c.snapshots.frequency, 7],
  [{ COS_NUM_SNAPSHOTS_TO_RETAIN: '5' }, (c) => c.snapshots.retain, 5],
  [{ COS_NUM_SHARDS: '8192' }, (c) => c.numShards, 8192],
  [{ COS_NUM_SHARDS: '1' }, (c) => c.numShards, 1],
  [{ WRITE_SIDE_HANDLER_SERVICE_HOST: 'users' }, (c) => c.writeSide.host, 'users'],
  [{ WRITE_SIDE_HANDLER_SERVICE_PORT: '6000' }, (c) => c.writeSide.port, 6000],
  [
    { WRITE_SIDE_HANDLER_SERVICE_HOST: '', COS_WRITE_SIDE_HOST: 'users' },
    (c) => c.writeSide.host,
    'users',
  ],
  [{ WRITE_SIDE_HANDLER_SERVICE_PORT: '', COS_WRITE_SIDE_PORT: '6000' }, (c) => c.writeSide.port, 6000],
  [{ COS_WRITE_SIDE_USE_TLS: 'true' }, (c) => c.writeSide.useTls, true],
  // outbound TLS (client-tls)
  [
    {
      COS_WRITE_SIDE_USE_TLS: 'true',
      COS_WRITE_SIDE_TLS_CA_FILE: 'tls/ca.crt',
      COS_WRITE_SIDE_TLS_CERT_FILE: '/tls/tls.crt',
      COS_WRITE_SIDE_TLS_KEY_FILE: '/tls/tls.key',
      COS_WRITE_SIDE_TLS_SERVER_NAME: 'handler.internal',
      COS_TLS_RELOAD_INTERVAL: '0',
    },
    (c) => c.writeSide.tls,
    { caFile: '/srv/cos/tls/ca.crt', certFile: '/tls/tls.crt', keyFile: '/tls/tls.key', serverName: 'handler.internal', reloadIntervalMs: 0 },
  ],
  [
    {
      COS_TLS_CERT_FILE: '/tls/tls.crt',
      COS_TLS_KEY_FILE: '/tls/tls.key',
      COS_TLS_CLIENT_CA_FILE: '/tls/clients.crt',
      COS_CLUSTER_TLS_CA_FILE: '/tls/cluster-ca.crt',
      COS_CLUSTER_TLS_SERVER_NAME: 'cos.cluster.internal',
    },
    (c) => c.cluster.peerTls,
    { caFile: '/tls/cluster-ca.crt', certFile: '/tls/tls.crt', keyFile: '/tls/tls.key', serverName: 'cos.cluster.internal', reloadIntervalMs: 10_000 },
  ],
  [
    { HANDLER_SERVICE_STATE_PROTO: 'my.app.State, type.googleapis.com/my.app.OtherState' },
    (c) => c.writeSide.validation,
    { enabled: true, stateTypes: ['my.app.State', 'my.app.OtherState'], eventTypes: [] },
  ],
  [
    { COS_WRITE_SIDE_STATE_PROTOS: 'my.app.State' },
    (c) => c.writeSide.validation.stateTypes,
    ['my.app.State'],
  ],
  [
    { HANDLER_SERVICE_EVENTS_PROTOS: 'my.app.Opened,my.app.Closed,my.app.Opened' },
    (c) => c.writeSide.validation,
    { enabled: true, stateTypes: [], eventTypes: ['my.app.Opened', 'my.app.Closed'] },
  ],
  [
    { COS_WRITE_SIDE_EVENT_PROTOS: 'my.app.Opened' },
    (c) => c.writeSide.validation.eventTypes,
    ['my.app.Opened'],
  ],
  [
    { COS_WRITE_SIDE_PROTO_VALIDATION: 'false', HANDLER_SERVICE_EVENTS_PROTOS: 'my.app.Opened' },
    (c) => c.writeSide.validation.enabled,
    false,
  ],
  [
    { COS_WRITE_SIDE_PROTO_VALIDATION: 'true', HANDLER_SERVICE_EVENTS_PROTOS: 'a.E', HANDLER_SERVICE_STATE_PROTO: 'a.S' },
    (c) => c.writeSide.validation.enabled,
    true,
  ],
  [
    { COS_WRITE_SIDE_PROPAGATED_HEADERS: 'X-Request-Id, Authorization' },
    (c) => c.writeSide.propagatedHeaders,
    ['x-request-id', 'authorization'],
  ],
  [{ COS_WRITE_PERSISTED_HEADERS: 'X-User-Bin,x-tenant' }, (c) => c.writeSide.persistedHeaders, ['x-user-bin', 'x-tenant']],
  [{ COS_COMMAND_HANDLER_TIMEOUT: '30' }, (c) => c.timeouts.commandMs, 30_000],
  [{ COS_COMMAND_HANDLER_TIMEOUT: '0.25', COS_GRPC_CALLS_TIMEOUT: '100' }, (c) => c.timeouts.commandMs, 250],
  [{ COS_GRPC_CALLS_TIMEOUT: '1500' }, (c) => c.timeouts.handlerCallMs, 1500],
  [{ COS_PASSIVATE_AFTER: '60' }, (c) => c.entities.passivateAfterMs, 60_000],
  [{ COS_MAX_ACTIVE_ENTITIES: '10' }, (c) => c.entities.maxActive, 10],
  [{ COS_ENTITY_CACHE_MAX_BYTES: '1048576' }, (c) => c.entities.cacheMaxBytes, 1_048_576],
  [{ COS_ENTITY_MAILBOX_SIZE: '64' }, (c) => c.entities.mailboxSize, 64],
  [{ COS_MAX_IN_FLIGHT_COMMANDS: '100' }, (c) => c.entities.maxInFlightCommands, 100],
  [{ COS_SUBSCRIPTION_ENABLED: 'true' }, (c) => c.subscriptions.enabled, true],
  [{ COS_SUBSCRIPTION_MAX_ACTIVE: '20' }, (c) => c.subscriptions.maxActive, 20],
  // front ends (COS_PROTO_DESCRIPTOR_SET needs files: front-ends.spec.ts)
  [{ COS_SERVER_PROTOCOL: 'both' }, (c) => c.frontEnds.protocol, 'both'],
  [{ COS_SERVER_PROTOCOL: 'http', COS_HTTP_ADDRESS: '127.0.0.2' }, (c) => c.frontEnds.http?.address, '127.0.0.2'],
  [{ COS_SERVER_PROTOCOL: 'http', COS_HTTP_PORT: '8080' }, (c) => c.frontEnds.http?.port, 8080],
  [{ COS_CORS_ALLOWED_ORIGINS: '*' }, (c) => c.frontEnds.corsAllowedOrigins, ['*']],
  [{ COS_JOURNAL_MAX_QUEUED_APPENDS: '10' }, (c) => c.journal.maxQueuedAppends, 10],
  // retry-safe commands
  [{ COS_IDEMPOTENCY_RETENTION: '3600.5' }, (c) => c.journal.idempotencyRetentionMs, 3_600_500],
  [{ COS_TEST_KILL_AFTER_COMMIT: 'acc-1' }, (c) => c.testHooks?.killAfterCommitOf, 'acc-1'],
  [{ COS_READ_SIDE_ENABLED: 'false' }, (c) => c.readSide.enabled, false],
  [
    { COS_READ_SIDE_ENABLED: 'true', READ_SIDE_HANDLER_SERVICE_HOST: 'rs', READ_SIDE_HANDLER_SERVICE_PORT: '7000' },
    (c) => c.readSide,
    {
      enabled: true,
      readSides: [
        {
          readSideId: 'default',
          host: 'rs',
          port: 7000,
          protocol: 'grpc',
          useTls: false,
          timeoutMs: 5000,
          autoStart: true,
          enabled: true,
          failurePolicy: 'REPLAY_STOP',
        },
      ],
      breaker: undefined,
    },
  ],
  // resilience (extensions.md section 1)
  [{ COS_WRITE_SIDE_PROTOCOL: 'HTTP' }, (c) => c.writeSide.protocol, 'http'],
  [{ COS_GRPC_CLIENT_POOL_SIZE: '4' }, (c) => c.writeSide.poolSize, 4],
  [
    {
      COS_WRITE_SIDE_BREAKER_ENABLED: 'true',
      COS_WRITE_SIDE_BREAKER_MAX_FAILURES: '3',
      COS_WRITE_SIDE_BREAKER_CALL_TIMEOUT: '1m30s',
      COS_WRITE_SIDE_BREAKER_RESET_TIMEOUT: '2.5',
    },
    (c) => c.writeSide.breaker,
    { maxFailures: 3, callTimeoutMs: 90_000, resetTimeoutMs: 2500 },
  ],
  [{ COS_WRITE_SIDE_BREAKER_ENABLED: '1' }, (c) => c.writeSide.breaker, { maxFailures: 5, callTimeoutMs: 60_000, resetTimeoutMs: 60_000 }],
  [
    {
      COS_READ_SIDE_BREAKER_ENABLED: 'true',
      COS_READ_SIDE_BREAKER_MAX_FAILURES: '100',
      COS_READ_SIDE_BREAKER_CALL_TIMEOUT: '500ms',
      COS_READ_SIDE_BREAKER_RESET_TIMEOUT: '1h',
    },
    (c) => c.readSide.breaker,
    { maxFailures: 100, callTimeoutMs: 500, resetTimeoutMs: 3_600_000 },
  ],
  [{ COS_READ_SIDE_BREAKER_ENABLED: 'true' }, (c) => c.readSide.breaker, { maxFailures: 5, callTimeoutMs: 10_000, resetTimeoutMs: 60_000 }],
  [
    {
      COS_GRPC_KEEPALIVE_ENABLED: 'true',
      COS_GRPC_KEEPALIVE_TIME: '20s',
      COS_GRPC_KEEPALIVE_TIMEOUT: '5',
      COS_GRPC_KEEPALIVE_WITHOUT_CALLS: 'false',
    },
    (c) => c.keepalive,
    { enabled: true, timeMs: 20_000, timeoutMs: 5000, withoutCalls: false },
  ],
  [{ COS_SERVICE_NAME: 'orders' }, (c) => c.telemetry.serviceName, 'orders'],
  [{ OTEL_SERVICE_NAME: 'orders' }, (c) => c.telemetry.serviceName, 'orders'],
  [{ TEAM_NAME: 'payments' }, (c) => c.telemetry.teamName, 'payments'],
  [{ TRACE_HOST: 'jaeger' }, (c) => c.telemetry.traceHost, 'jaeger'],
  [{ TRACE_PORT: '14268' }, (c) => c.telemetry.tracePort, 14268],
  [
    { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' },
    (c) => c.telemetry.otlpEndpoint,
    'http://collector:4318',
  ],
  [
    { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://collector.example.com/otlp/traces' },
    (c) => [c.telemetry.otlpTracesEndpoint, c.telemetry.tracesEndpoint],
    ['https://collector.example.com/otlp/traces', 'https://collector.example.com/otlp/traces'],
  ],
  [{ OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json' }, (c) => c.telemetry.tracesProtocol, 'http/json'],
  [{ OTEL_EXPORTER_OTLP_PROTOCOL: 'HTTP/JSON' }, (c) => c.telemetry.tracesProtocol, 'http/json'],
  [{ OTEL_TRACES_SAMPLER: 'Always_Off' }, (c) => c.telemetry.tracesSampler, { name: 'always_off', ratio: 1 }],
  [
    { OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.25' },
    (c) => c.telemetry.tracesSampler,
    { name: 'parentbased_traceidratio', ratio: 0.25 },
  ],
  [{ OTEL_BSP_SCHEDULE_DELAY: '200' }, (c) => c.telemetry.tracesBatch.scheduleDelayMs, 200],
  [{ OTEL_BSP_EXPORT_TIMEOUT: '1000' }, (c) => c.telemetry.tracesBatch.exportTimeoutMs, 1000],
  [
    { OTEL_BSP_MAX_QUEUE_SIZE: '100' },
    (c) => c.telemetry.tracesBatch,
    { scheduleDelayMs: 5000, exportTimeoutMs: 30_000, maxQueueSize: 100, maxExportBatchSize: 100 },
  ],
  [{ OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '64' }, (c) => c.telemetry.tracesBatch.maxExportBatchSize, 64],
  [{ COS_METRICS_PORT: '9200' }, (c) => c.telemetry.metricsPort, 9200],
  [{ COS_METRICS_ADDRESS: '10.0.0.5' }, (c) => c.telemetry.metricsAddress, '10.0.0.5'],
  [{ COS_METRICS_TOKEN_FILE: 'metrics-token' }, (c) => c.security.metricsTokenFile, '/srv/cos/metrics-token'],
  [{ COS_DEPLOYMENT_MODE: 'Kubernetes' }, (c) => c.cluster.mode, 'kubernetes'],
  [{ COS_DOCKER_SERVICE_NAME: 'cos_app' }, (c) => c.cluster.dockerServiceName, 'cos_app'],
  [{ ...PG, COS_DOCKER_REPLICA_COUNT: '3' }, (c) => c.cluster.replicaCount, 3],
  [
    { ...PG, COS_DEPLOYMENT_MODE: 'kubernetes', COS_KUBERNETES_REPLICA_COUNT: '4' },
    (c) => c.cluster.replicaCount,
    4,
  ],
  [{ ...PG, COS_REPLICA_COUNT: '2' }, (c) => c.cluster.replicaCount, 2],
  [{ ...PG, COS_DEPLOYMENT_MODE: 'kubernetes', COS_REPLICA_COUNT: '5' }, (c) => c.cluster.replicaCount, 5],
  [{ POD_IP: '10.1.2.3' }, (c) => c.cluster.podIp, '10.1.2.3'],
  [{ POD_IP: 'fd00::1' }, (c) => c.cluster.podIp, 'fd00::1'],
  [{ COS_KUBERNETES_APP_LABEL: 'chiefofstate' }, (c) => c.cluster.kubernetesAppLabel, 'chiefofstate'],
  [{ COS_CLUSTER_SECRET: ' sixteen chars+ ' }, (c) => c.cluster.secret, ' sixteen chars+ '],
  [{ COS_CLUSTER_MAX_CLOCK_SKEW: '2.5' }, (c) => c.cluster.maxClockSkewMs, 2500],
  [{ COS_CLUSTER_FAST_TAKEOVER: 'false' }, (c) => c.cluster.fastTakeover, false],
  [{ LOG_LEVEL: 'DEBUG' }, (c) => c.log.level, 'debug'],
  [{ LOG_LEVEL: 'Trace' }, (c) => c.log.level, 'trace'],
  [{ LOG_STYLE: 'simple' }, (c) => c.log.style, 'SIMPLE'],
  [{ LOG_STYLE: 'json' }, (c) => c.log.style, 'JSON'],
  [
    { ...PG, COS_READ_SIDE_OFFSET_DB_HOST: 'offsets' },
    (c) => c.readSideOffsetStore.kind === 'postgres' && c.readSideOffsetStore.host,
    'offsets',
  ],
  [
    { ...PG, COS_READ_SIDE_OFFSET_DB_PORT: '6543' },
    (c) => c.readSideOffsetStore.kind === 'postgres' && c.readSideOffsetStore.port,
    6543,
  ],
  [
    { ...PG, COS_READ_SIDE_OFFSET_DB_USER: 'reader' },
    (c) => c.readSideOffsetStore.kind === 'postgres' && c.readSideOffsetStore.user,
    'reader',
  ],
  [
    { ...PG, COS_READ_SIDE_OFFSET_DB_PASSWORD: 'pw2' },
    (c) => c.readSideOffsetStore.kind === 'postgres' && c.readSideOffsetStore.password,
    'pw2',
  ],
  [
    { ...PG, COS_READ_SIDE_OFFSET_DB: 'offsets_db' },
    (c) => c.readSideOffsetStore.kind === 'postgres' && c.readSideOffsetStore.database,
    'offsets_db',
  ],
  [{ COS_READ_SIDE_OFFSET_DB_SCHEMA: 'offsets' }, (c) => c.readSideOffsetStore.schema, 'offsets'],
  [
    { COS_READ_SIDE_CONFIG__HOST__ledger: 'ledger-rs', COS_READ_SIDE_CONFIG__PORT__ledger: '7001' },
    (c) => c.readSide.readSides.map((side) => [side.readSideId, side.host, side.port]),
    [['ledger', 'ledger-rs', 7001]],
  ],
];

describe('every variable', () => {
  it.each(ROWS.map((row) => [Object.keys(row[0]).join(' '), ...row] as const))(
    '%s',
    (_name, env, select, expected) => {
      const { config } = load(env);
      expect(select(config)).toEqual(expected);
    },
  );

  it('has a row for every documented name and every alias', () => {
    const covered = new Set(ROWS.flatMap(([env]) => Object.keys(env)));
    // COS_READ_SIDE_CONFIG, COS_PUBLISHER_CONFIG (YAML) and their __<SETTING>__<ID> forms, and
    // COS_PROTO_DESCRIPTOR_SET (files) have their own specs
    const ownSpecs = new Set(['COS_READ_SIDE_CONFIG', 'COS_PUBLISHER_CONFIG', 'COS_PROTO_DESCRIPTOR_SET']);
    const names = CONFIG_VARIABLES.flatMap((variable) => [variable.name, ...variable.aliases]).filter(
      (name) => !name.includes('<') && !ownSpecs.has(name),
    );
    expect(names.filter((name) => !covered.has(name))).toEqual([]);
  });
});

describe('aliases and precedence', () => {
  const PAIRS: readonly [documented: string, alias: string, a: string, b: string, select: (c: CosConfig) => unknown][] =
    [
      ['COS_POSTGRES_HOST', 'COS_DB_HOST', 'a', 'b', (c) => c.store.kind === 'postgres' && c.store.host],
      ['COS_POSTGRES_PORT', 'COS_DB_PORT', '1111', '2222', (c) => c.store.kind === 'postgres' && c.store.port],
      ['COS_POSTGRES_USER', 'COS_DB_USER', 'a', 'b', (c) => c.store.kind === 'postgres' && c.store.user],
      ['COS_POSTGRES_PASSWORD', 'COS_DB_PASSWORD', 'a', 'b', (c) => c.store.kind === 'postgres' && c.store.password],
      ['COS_POSTGRES_DB', 'COS_DB_NAME', 'a', 'b', (c) => c.store.kind === 'postgres' && c.store.database],
      ['COS_POSTGRES_SCHEMA', 'COS_DB_SCHEMA', 'a', 'b', (c) => c.store.schema],
      ['WRITE_SIDE_HANDLER_SERVICE_HOST', 'COS_WRITE_SIDE_HOST', 'a', 'b', (c) => c.writeSide.host],
      ['WRITE_SIDE_HANDLER_SERVICE_PORT', 'COS_WRITE_SIDE_PORT', '1111', '2222', (c) => c.writeSide.port],
      ['HANDLER_SERVICE_STATE_PROTO', 'COS_WRITE_SIDE_STATE_PROTOS', 'a.A', 'b.B', (c) => c.writeSide.validation.stateTypes],
      ['HANDLER_SERVICE_EVENTS_PROTOS', 'COS_WRITE_SIDE_EVENT_PROTOS', 'a.A', 'b.B', (c) => c.writeSide.validation.eventTypes],
      ['COS_SERVICE_NAME', 'OTEL_SERVICE_NAME', 'a', 'b', (c) => c.telemetry.serviceName],
      ['COS_DOCKER_REPLICA_COUNT', 'COS_REPLICA_COUNT', '2', '3', (c) => c.cluster.replicaCount],
    ];

  it.each(PAIRS)('%s wins over %s, with a warning', (documented, alias, a, b, select) => {
    const { config, warnings } = load({ ...PG, [documented]: a, [alias]: b });
    const expected = select(load({ ...PG, [documented]: a }).config);
    expect(select(config)).toEqual(expected);
    expect(select(load({ ...PG, [alias]: b }).config)).not.toEqual(expected);
    expect(warnings).toContain(`both ${documented} and ${alias} are set; using ${documented}`);
  });

  it('takes COS_REPLICA_COUNT as the kubernetes count in kubernetes mode', () => {
    const env = { ...PG, COS_DEPLOYMENT_MODE: 'kubernetes', COS_KUBERNETES_REPLICA_COUNT: '4', COS_REPLICA_COUNT: '6' };
    const { config, warnings } = load(env);
    expect(config.cluster.replicaCount).toBe(4);
    expect(warnings).toContain('both COS_KUBERNETES_REPLICA_COUNT and COS_REPLICA_COUNT are set; using COS_KUBERNETES_REPLICA_COUNT');
  });

  it('ignores the other mode replica count, with a warning', () => {
    const { config, warnings } = load({ ...PG, COS_KUBERNETES_REPLICA_COUNT: '4' });
    expect(config.cluster.replicaCount).toBe(1);
    expect(warnings).toContain('COS_KUBERNETES_REPLICA_COUNT is ignored: COS_DEPLOYMENT_MODE is docker');
  });

  it('warns about postgres settings that the embedded store ignores', () => {
    const { config, warnings } = load({ COS_POSTGRES_PORT: '6432', COS_DB_POOL_MAX_SIZE: '9' });
    expect(config.store.kind).toBe('embedded');
    expect(warnings).toEqual([
      'COS_POSTGRES_PORT is ignored: COS_POSTGRES_HOST is unset, so the embedded store is used',
      'COS_DB_POOL_MAX_SIZE is ignored: COS_POSTGRES_HOST is unset, so the embedded store is used',
    ]);
  });

  it('warns about breaker settings without the breaker, and a gRPC pool for an HTTP write handler', () => {
    expect(load({ COS_WRITE_SIDE_BREAKER_MAX_FAILURES: '3', COS_READ_SIDE_BREAKER_RESET_TIMEOUT: '5s' }).warnings).toEqual([
      'COS_WRITE_SIDE_BREAKER_MAX_FAILURES is ignored: COS_WRITE_SIDE_BREAKER_ENABLED is not true',
      'COS_READ_SIDE_BREAKER_RESET_TIMEOUT is ignored: COS_READ_SIDE_BREAKER_ENABLED is not true',
    ]);
    expect(load({ COS_WRITE_SIDE_PROTOCOL: 'http', COS_GRPC_CLIENT_POOL_SIZE: '4' }).warnings).toEqual([
      'COS_GRPC_CLIENT_POOL_SIZE is ignored for the write handler: COS_WRITE_SIDE_PROTOCOL=http (HTTP handlers use a keep-alive pool)',
    ]);
  });

  it('warns about COS_DATA_DIR with a postgres store', () => {
    expect(load({ ...PG, COS_DATA_DIR: '/data' }).warnings).toEqual([
      'COS_DATA_DIR is ignored: COS_POSTGRES_HOST is set, so the embedded store is not used',
    ]);
  });

  it('warns about unknown COS_ variables, suggesting the closest name', () => {
    const { warnings } = load({ COS_POSTGRES_HOTS: 'db', COS_SOMETHING_ELSE_ENTIRELY: 'x', PATH: '/bin' });
    expect(warnings).toEqual([
      'COS_POSTGRES_HOTS is not a COS variable and is ignored; did you mean COS_POSTGRES_HOST?',
      'COS_SOMETHING_ELSE_ENTIRELY is not a COS variable and is ignored',
    ]);
  });

  it('does not warn about Kubernetes service links of a Service named cos', () => {
    expect(load({ COS_SERVICE_HOST: '10.0.0.1', COS_PORT_9000_TCP: 'tcp://10.0.0.1:9000' }).warnings).toEqual([]);
  });
});

describe('offset store', () => {
  it('takes each unset value from the journal store', () => {
    const env = {
      COS_POSTGRES_HOST: 'db',
      COS_POSTGRES_USER: 'cos',
      COS_POSTGRES_PASSWORD: 'pw',
      COS_POSTGRES_DB: 'events',
      COS_DB_POOL_MAX_SIZE: '8',
      COS_READ_SIDE_OFFSET_DB_SCHEMA: 'offsets',
    };
    expect(load(env).config.readSideOffsetStore).toEqual({
      kind: 'postgres',
      host: 'db',
      port: 5432,
      user: 'cos',
      password: 'pw',
      database: 'events',
      schema: 'offsets',
      poolMax: 8,
      connectTimeoutMs: 5000,
      statementTimeoutMs: 5000,
      idleInTransactionTimeoutMs: 10_000,
      poolMaxWaiting: 1000,
    });
  });

  it('can put offsets in PostgreSQL while the journal is embedded', () => {
    const { config } = load({ COS_READ_SIDE_OFFSET_DB_HOST: 'offsets', COS_READ_SIDE_OFFSET_DB_USER: 'u' });
    expect(config.store.kind).toBe('embedded');
    expect(config.readSideOffsetStore).toEqual({
      kind: 'postgres',
      host: 'offsets',
      port: 5432,
      user: 'u',
      password: 'changeme',
      database: 'postgres',
      schema: 'public',
      poolMax: 5,
      connectTimeoutMs: 5000,
      statementTimeoutMs: 5000,
      idleInTransactionTimeoutMs: 10_000,
      poolMaxWaiting: 1000,
    });
  });

  it('keeps an embedded offset store in the journal data directory, in its own schema', () => {
    const { config, warnings } = load({ COS_READ_SIDE_OFFSET_DB_SCHEMA: 'offsets', COS_READ_SIDE_OFFSET_DB_USER: 'u' });
    expect(config.readSideOffsetStore).toEqual({ kind: 'embedded', dataDir: resolve(CWD, '.cos-data'), schema: 'offsets' });
    expect(warnings).toEqual([
      'COS_READ_SIDE_OFFSET_DB_USER is ignored: neither COS_READ_SIDE_OFFSET_DB_HOST nor COS_POSTGRES_HOST is set',
    ]);
  });
});

describe('outbound TLS', () => {
  it('uses the write handler TLS only with COS_WRITE_SIDE_USE_TLS, the system CAs without a CA file', () => {
    expect(load({}).config.writeSide.tls).toBeUndefined();
    expect(load({ COS_WRITE_SIDE_USE_TLS: 'true' }).config.writeSide.tls).toEqual({
      caFile: undefined,
      certFile: undefined,
      keyFile: undefined,
      serverName: undefined,
      reloadIntervalMs: 10_000,
    });
  });

  it('refuses write handler TLS settings without COS_WRITE_SIDE_USE_TLS, and a certificate without its key', () => {
    expect(problemsOf({ COS_WRITE_SIDE_TLS_CA_FILE: '/ca.crt', COS_WRITE_SIDE_TLS_SERVER_NAME: 'h', COS_WRITE_SIDE_USE_TLS: 'false' })).toEqual([
      'COS_WRITE_SIDE_TLS_CA_FILE is set but COS_WRITE_SIDE_USE_TLS is not true: expected COS_WRITE_SIDE_USE_TLS=true to use it, or COS_WRITE_SIDE_TLS_CA_FILE unset',
      'COS_WRITE_SIDE_TLS_SERVER_NAME is set but COS_WRITE_SIDE_USE_TLS is not true: expected COS_WRITE_SIDE_USE_TLS=true to use it, or COS_WRITE_SIDE_TLS_SERVER_NAME unset',
    ]);
    expect(problemsOf({ COS_WRITE_SIDE_USE_TLS: 'true', COS_WRITE_SIDE_TLS_CERT_FILE: '/c.crt' })).toEqual([
      'COS_WRITE_SIDE_TLS_CERT_FILE is set without COS_WRITE_SIDE_TLS_KEY_FILE: expected both (a client certificate and its key) or neither',
    ]);
    expect(problemsOf({ COS_WRITE_SIDE_USE_TLS: 'true', COS_WRITE_SIDE_TLS_KEY_FILE: '/c.key', COS_WRITE_SIDE_TLS_SERVER_NAME: 'a b' })).toEqual([
      'COS_WRITE_SIDE_TLS_SERVER_NAME="a b": expected a host name or IP address, without scheme or port',
      'COS_WRITE_SIDE_TLS_KEY_FILE is set without COS_WRITE_SIDE_TLS_CERT_FILE: expected both (a client certificate and its key) or neither',
    ]);
  });

  it('dials peers over TLS only when the listener has TLS, trusting COS_TLS_CLIENT_CA_FILE by default', () => {
    expect(load({}).config.cluster.peerTls).toBeUndefined();
    expect(load({ COS_TLS_CERT_FILE: 'tls.crt', COS_TLS_KEY_FILE: 'tls.key', COS_TLS_CLIENT_CA_FILE: 'ca.crt' }).config.cluster.peerTls).toEqual({
      caFile: '/srv/cos/ca.crt',
      certFile: '/srv/cos/tls.crt',
      keyFile: '/srv/cos/tls.key',
      serverName: undefined,
      reloadIntervalMs: 10_000,
    });
    expect(problemsOf({ COS_CLUSTER_TLS_CA_FILE: '/ca.crt', COS_CLUSTER_TLS_SERVER_NAME: 'cos' })).toEqual([
      'COS_CLUSTER_TLS_CA_FILE is set but COS_TLS_CERT_FILE and COS_TLS_KEY_FILE are not: expected them set (peers are dialled over TLS only when this replica serves TLS), or COS_CLUSTER_TLS_CA_FILE unset',
      'COS_CLUSTER_TLS_SERVER_NAME is set but COS_TLS_CERT_FILE and COS_TLS_KEY_FILE are not: expected them set (peers are dialled over TLS only when this replica serves TLS), or COS_CLUSTER_TLS_SERVER_NAME unset',
    ]);
  });

  it('reads COS_TLS_RELOAD_INTERVAL in seconds, 0 for never', () => {
    expect(problemsOf({ COS_TLS_RELOAD_INTERVAL: '-1' })).toEqual([
      'COS_TLS_RELOAD_INTERVAL="-1": expected a number of seconds >= 0, 0 for never (at most 2147483)',
    ]);
    expect(load({ COS_WRITE_SIDE_USE_TLS: '1', COS_TLS_RELOAD_INTERVAL: '0.5' }).config.writeSide.tls?.reloadIntervalMs).toBe(500);
  });
});

describe('write side type validation', () => {
  it('is off without lists', () => {
    expect(load({}).config.writeSide.validation.enabled).toBe(false);
  });

  it('forced on without any list is a problem', () => {
    expect(problemsOf({ COS_WRITE_SIDE_PROTO_VALIDATION: 'true' })).toEqual([
      'COS_WRITE_SIDE_PROTO_VALIDATION="true": expected HANDLER_SERVICE_STATE_PROTO or HANDLER_SERVICE_EVENTS_PROTOS to list the allowed types (with no list, every event would be rejected)',
    ]);
  });

  it('warns when only one list is set, since the other kind is then always rejected', () => {
    expect(load({ HANDLER_SERVICE_EVENTS_PROTOS: 'a.E' }).warnings).toEqual([
      'type validation is on and HANDLER_SERVICE_STATE_PROTO lists no type: every resulting state will be rejected',
    ]);
    expect(load({ HANDLER_SERVICE_STATE_PROTO: 'a.S' }).warnings).toEqual([
      'type validation is on and HANDLER_SERVICE_EVENTS_PROTOS lists no type: every event will be rejected',
    ]);
  });

  it('warns when forced off with lists', () => {
    expect(load({ COS_WRITE_SIDE_PROTO_VALIDATION: '0', HANDLER_SERVICE_STATE_PROTO: 'a.S' }).warnings).toEqual([
      'COS_WRITE_SIDE_PROTO_VALIDATION=false: the listed state and event types are not validated',
    ]);
  });
});

describe('bad values', () => {
  const BAD: readonly [env: Record<string, string>, problem: string][] = [
    [{ COS_PORT: 'abc' }, 'COS_PORT="abc": expected an integer port 1..65535'],
    [{ COS_PORT: '0' }, 'COS_PORT="0": expected an integer port 1..65535'],
    [{ COS_PORT: '65536' }, 'COS_PORT="65536": expected an integer port 1..65535'],
    [{ COS_PORT: '90.5' }, 'COS_PORT="90.5": expected an integer port 1..65535'],
    [
      { COS_PORT: 'tcp://10.0.0.1:9000' },
      'COS_PORT="tcp://10.0.0.1:9000": expected an integer port 1..65535 (Kubernetes sets such a value for a Service of that name prefix; rename the Service or set enableServiceLinks: false)',
    ],
    [{ COS_ADDRESS: 'http://0.0.0.0' }, 'COS_ADDRESS="http://0.0.0.0": expected a host name or IP address, without scheme or port'],
    [{ COS_GRPC_MAX_MESSAGE_BYTES: '0' }, 'COS_GRPC_MAX_MESSAGE_BYTES="0": expected an integer number of bytes 1..2147483647'],
    [{ COS_EVENTS_BATCH_THRESHOLD: '-5' }, 'COS_EVENTS_BATCH_THRESHOLD="-5": expected an integer >= 1'],
    [{ COS_EVENTS_BATCH_THRESHOLD: '0' }, 'COS_EVENTS_BATCH_THRESHOLD="0": expected an integer >= 1'],
    [{ COS_NUM_SHARDS: '12' }, 'COS_NUM_SHARDS="12": expected a power of two from 1 to 10000 (1, 2, 4, ..., 8192)'],
    [{ COS_NUM_SHARDS: '16384' }, 'COS_NUM_SHARDS="16384": expected a power of two from 1 to 10000 (1, 2, 4, ..., 8192)'],
    [{ COS_NUM_SHARDS: '0' }, 'COS_NUM_SHARDS="0": expected a power of two from 1 to 10000 (1, 2, 4, ..., 8192)'],
    [{ COS_SNAPSHOT_FREQUENCY: '0' }, 'COS_SNAPSHOT_FREQUENCY="0": expected an integer >= 1'],
    [{ COS_SUBSCRIPTION_MAX_ACTIVE: '0' }, 'COS_SUBSCRIPTION_MAX_ACTIVE="0": expected an integer >= 1'],
    [{ COS_ENTITY_MAILBOX_SIZE: '0' }, 'COS_ENTITY_MAILBOX_SIZE="0": expected an integer >= 1'],
    [{ COS_MAX_IN_FLIGHT_COMMANDS: '-1' }, 'COS_MAX_IN_FLIGHT_COMMANDS="-1": expected an integer >= 1'],
    [{ COS_ENTITY_CACHE_MAX_BYTES: '1.5' }, 'COS_ENTITY_CACHE_MAX_BYTES="1.5": expected an integer >= 1'],
    [{ COS_JOURNAL_MAX_QUEUED_APPENDS: '0' }, 'COS_JOURNAL_MAX_QUEUED_APPENDS="0": expected an integer >= 1'],
    [{ COS_IDEMPOTENCY_RETENTION: '0' }, 'COS_IDEMPOTENCY_RETENTION="0": expected a number of seconds > 0 (at most 2147483)'],
    [{ COS_NUM_SNAPSHOTS_TO_RETAIN: '0' }, 'COS_NUM_SNAPSHOTS_TO_RETAIN="0": expected an integer >= 1'],
    [{ COS_DB_POOL_MAX_SIZE: '1001' }, 'COS_DB_POOL_MAX_SIZE="1001": expected an integer 1..1000'],
    [{ COS_DB_POOL_MAX_WAITING: '0' }, 'COS_DB_POOL_MAX_WAITING="0": expected an integer 1..1000000'],
    [{ COS_DB_STATEMENT_TIMEOUT: '0' }, 'COS_DB_STATEMENT_TIMEOUT="0": expected a number of seconds > 0 (at most 2147483)'],
    [{ COS_DB_CONNECT_TIMEOUT: '5s' }, 'COS_DB_CONNECT_TIMEOUT="5s": expected a number of seconds > 0 (at most 2147483)'],
    [{ COS_DISABLE_SNAPSHOT: 'yes' }, 'COS_DISABLE_SNAPSHOT="yes": expected true or false (or 1 / 0)'],
    [{ COS_READ_SIDE_ENABLED: 'on' }, 'COS_READ_SIDE_ENABLED="on": expected true or false (or 1 / 0)'],
    [{ COS_WRITE_SIDE_USE_TLS: '2' }, 'COS_WRITE_SIDE_USE_TLS="2": expected true or false (or 1 / 0)'],
    [{ COS_JOURNAL_LOGICAL_DELETION: 'nope' }, 'COS_JOURNAL_LOGICAL_DELETION="nope": expected true or false (or 1 / 0)'],
    [{ COS_COMMAND_HANDLER_TIMEOUT: '0' }, 'COS_COMMAND_HANDLER_TIMEOUT="0": expected a number of seconds > 0 (at most 2147483)'],
    [{ COS_COMMAND_HANDLER_TIMEOUT: '-1' }, 'COS_COMMAND_HANDLER_TIMEOUT="-1": expected a number of seconds > 0 (at most 2147483)'],
    [{ COS_COMMAND_HANDLER_TIMEOUT: '5s' }, 'COS_COMMAND_HANDLER_TIMEOUT="5s": expected a number of seconds > 0 (at most 2147483)'],
    [{ COS_PASSIVATE_AFTER: '99999999' }, 'COS_PASSIVATE_AFTER="99999999": expected a number of seconds > 0 (at most 2147483)'],
    [{ COS_GRPC_CALLS_TIMEOUT: '0' }, 'COS_GRPC_CALLS_TIMEOUT="0": expected an integer number of milliseconds 1..2147483647'],
    [
      { COS_WRITE_SIDE_PROTOCOL: 'both' },
      'COS_WRITE_SIDE_PROTOCOL="both": expected grpc or http (COS calls the write handler one way; both is only a value of COS_SERVER_PROTOCOL)',
    ],
    [{ COS_WRITE_SIDE_PROTOCOL: 'rest' }, 'COS_WRITE_SIDE_PROTOCOL="rest": expected grpc or http'],
    [{ COS_GRPC_CLIENT_POOL_SIZE: '0' }, 'COS_GRPC_CLIENT_POOL_SIZE="0": expected an integer 1..64'],
    [{ COS_WRITE_SIDE_BREAKER_MAX_FAILURES: '101' }, 'COS_WRITE_SIDE_BREAKER_MAX_FAILURES="101": expected an integer 1..100'],
    [
      { COS_WRITE_SIDE_BREAKER_CALL_TIMEOUT: '6m' },
      'COS_WRITE_SIDE_BREAKER_CALL_TIMEOUT="6m": expected a duration of at most 5m, such as 30s or 1m (a bare number is seconds)',
    ],
    [
      { COS_READ_SIDE_BREAKER_RESET_TIMEOUT: '500ms' },
      'COS_READ_SIDE_BREAKER_RESET_TIMEOUT="500ms": expected a duration from 1s to 1h, such as 30s or 1m (a bare number is seconds)',
    ],
    [
      { COS_GRPC_KEEPALIVE_TIME: '2 minutes' },
      'COS_GRPC_KEEPALIVE_TIME="2 minutes": expected a duration of at least 1s, such as 20s or 2m (a bare number is seconds)',
    ],
    [{ COS_MAX_ACTIVE_ENTITIES: 'many' }, 'COS_MAX_ACTIVE_ENTITIES="many": expected an integer >= 1'],
    [
      { COS_POSTGRES_SCHEMA: 'my-schema' },
      'COS_POSTGRES_SCHEMA="my-schema": expected a PostgreSQL identifier: letters, digits and _, not starting with a digit, at most 63 characters',
    ],
    [
      { COS_READ_SIDE_OFFSET_DB_SCHEMA: 'x;drop' },
      'COS_READ_SIDE_OFFSET_DB_SCHEMA="x;drop": expected a PostgreSQL identifier: letters, digits and _, not starting with a digit, at most 63 characters',
    ],
    [{ COS_POSTGRES_HOST: 'db:5432' }, 'COS_POSTGRES_HOST="db:5432": expected a host name or IP address, without scheme or port'],
    [{ COS_READ_SIDE_OFFSET_DB_PORT: 'x' }, 'COS_READ_SIDE_OFFSET_DB_PORT="x": expected an integer port 1..65535'],
    [
      { COS_KAFKA_BROKER: 'k1:9092,k2' },
      'COS_KAFKA_BROKER="k1:9092,k2": expected comma-separated host:port pairs ("k2" is not one)',
    ],
    [
      { HANDLER_SERVICE_EVENTS_PROTOS: 'a.Ok, not a name' },
      'HANDLER_SERVICE_EVENTS_PROTOS="a.Ok, not a name": expected comma-separated protobuf message names like my.package.State ("not a name" is not one)',
    ],
    [
      { COS_WRITE_SIDE_PROPAGATED_HEADERS: 'x-ok, grpc-timeout' },
      'COS_WRITE_SIDE_PROPAGATED_HEADERS="x-ok, grpc-timeout": expected comma-separated header names (letters, digits, - _ .; not starting with grpc-) ("grpc-timeout" is not one)',
    ],
    [
      { COS_WRITE_PERSISTED_HEADERS: 'x y' },
      'COS_WRITE_PERSISTED_HEADERS="x y": expected comma-separated header names (letters, digits, - _ .; not starting with grpc-) ("x y" is not one)',
    ],
    [{ TRACE_PORT: '99999' }, 'TRACE_PORT="99999": expected an integer port 1..65535'],
    [{ TRACE_HOST: 'a b' }, 'TRACE_HOST="a b": expected a host name or IP address, without scheme or port'],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' }, 'OTEL_EXPORTER_OTLP_ENDPOINT="collector:4318": expected an http:// or https:// URL'],
    [
      { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'collector:4318/v1/traces' },
      'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="collector:4318/v1/traces": expected an http:// or https:// URL',
    ],
    [
      { OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' },
      'OTEL_EXPORTER_OTLP_PROTOCOL="grpc": expected http/protobuf or http/json (OTLP over gRPC is not supported; COS exports over HTTP only)',
    ],
    [
      { OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'GRPC' },
      'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="GRPC": expected http/protobuf or http/json (OTLP over gRPC is not supported; COS exports over HTTP only)',
    ],
    [
      { OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json', OTEL_EXPORTER_OTLP_PROTOCOL: 'protobuf' },
      'OTEL_EXPORTER_OTLP_PROTOCOL="protobuf": expected http/protobuf or http/json',
    ],
    [
      { OTEL_TRACES_SAMPLER: 'jaeger_remote' },
      'OTEL_TRACES_SAMPLER="jaeger_remote": expected one of always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio',
    ],
    [{ OTEL_TRACES_SAMPLER_ARG: '1.5' }, 'OTEL_TRACES_SAMPLER_ARG="1.5": expected a number from 0 to 1, like 0.25'],
    [{ OTEL_TRACES_SAMPLER_ARG: '-0.1' }, 'OTEL_TRACES_SAMPLER_ARG="-0.1": expected a number from 0 to 1, like 0.25'],
    [{ OTEL_TRACES_SAMPLER_ARG: '10%' }, 'OTEL_TRACES_SAMPLER_ARG="10%": expected a number from 0 to 1, like 0.25'],
    [{ OTEL_BSP_SCHEDULE_DELAY: '0' }, 'OTEL_BSP_SCHEDULE_DELAY="0": expected an integer number of milliseconds 1..2147483647'],
    [{ OTEL_BSP_EXPORT_TIMEOUT: '30s' }, 'OTEL_BSP_EXPORT_TIMEOUT="30s": expected an integer number of milliseconds 1..2147483647'],
    [{ OTEL_BSP_MAX_QUEUE_SIZE: '0' }, 'OTEL_BSP_MAX_QUEUE_SIZE="0": expected an integer >= 1'],
    [{ OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '1.5' }, 'OTEL_BSP_MAX_EXPORT_BATCH_SIZE="1.5": expected an integer >= 1'],
    [
      { OTEL_BSP_MAX_QUEUE_SIZE: '100', OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '200' },
      'OTEL_BSP_MAX_EXPORT_BATCH_SIZE="200": expected at most OTEL_BSP_MAX_QUEUE_SIZE (100)',
    ],
    [
      { OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '4096' },
      'OTEL_BSP_MAX_EXPORT_BATCH_SIZE="4096": expected at most OTEL_BSP_MAX_QUEUE_SIZE (2048, its default)',
    ],
    [{ COS_METRICS_PORT: '9000' }, 'COS_METRICS_PORT="9000": expected a port other than COS_PORT (9000)'],
    [{ COS_DEPLOYMENT_MODE: 'swarm' }, 'COS_DEPLOYMENT_MODE="swarm": expected docker or kubernetes'],
    [{ COS_DOCKER_REPLICA_COUNT: '0' }, 'COS_DOCKER_REPLICA_COUNT="0": expected an integer >= 1'],
    [
      { COS_DOCKER_REPLICA_COUNT: '3' },
      'COS_DOCKER_REPLICA_COUNT="3": expected 1, because the embedded store serves one process; set COS_POSTGRES_HOST to a PostgreSQL shared by the replicas to run several',
    ],
    [
      { COS_DEPLOYMENT_MODE: 'kubernetes', COS_REPLICA_COUNT: '2' },
      'COS_REPLICA_COUNT="2": expected 1, because the embedded store serves one process; set COS_POSTGRES_HOST to a PostgreSQL shared by the replicas to run several',
    ],
    [{ POD_IP: 'pod-1' }, 'POD_IP="pod-1": expected an IPv4 or IPv6 address'],
    // a secret is never shown, even when refused
    [{ COS_CLUSTER_SECRET: 'too short' }, 'COS_CLUSTER_SECRET=***: expected a secret of at least 16 characters'],
    [{ LOG_LEVEL: 'verbose' }, 'LOG_LEVEL="verbose": expected one of trace, debug, info, warn, error'],
    [{ LOG_STYLE: 'pretty' }, 'LOG_STYLE="pretty": expected JSON or SIMPLE'],
    [
      { WRITE_SIDE_HANDLER_SERVICE_HOST: '' },
      'WRITE_SIDE_HANDLER_SERVICE_HOST is unset: expected the host of your WriteSideHandlerService (alias COS_WRITE_SIDE_HOST)',
    ],
    [
      { WRITE_SIDE_HANDLER_SERVICE_PORT: '' },
      'WRITE_SIDE_HANDLER_SERVICE_PORT is unset: expected the port of your WriteSideHandlerService (alias COS_WRITE_SIDE_PORT)',
    ],
    [{ COS_WRITE_SIDE_PORT: 'abc', WRITE_SIDE_HANDLER_SERVICE_PORT: '' }, 'COS_WRITE_SIDE_PORT="abc": expected an integer port 1..65535'],
    [
      { COS_READ_SIDE_ENABLED: 'true' },
      'READ_SIDE_HANDLER_SERVICE_HOST is unset: expected a read side host, required when COS_READ_SIDE_ENABLED=true and no other read side is configured (or configure read sides with COS_READ_SIDE_CONFIG or COS_READ_SIDE_CONFIG__HOST__<ID>)',
    ],
  ];

  it.each(BAD)('%o', (env, problem) => {
    const error = configErrorOf(env);
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.code).toBe('COS_CONFIG_INVALID');
    expect(error.problems).toEqual([problem]);
    expect(error.message).toContain(problem);
  });

  it('a documented name that is invalid is not replaced by its valid alias', () => {
    expect(problemsOf({ ...PG, COS_POSTGRES_PORT: 'x', COS_DB_PORT: '5432' })).toEqual([
      'COS_POSTGRES_PORT="x": expected an integer port 1..65535',
    ]);
  });

  it('reports every problem at once', () => {
    const problems = problemsOf({
      WRITE_SIDE_HANDLER_SERVICE_HOST: '',
      COS_PORT: 'abc',
      COS_EVENTS_BATCH_THRESHOLD: '-1',
      COS_NUM_SHARDS: '12',
      COS_DISABLE_SNAPSHOT: 'maybe',
      LOG_LEVEL: 'loud',
      COS_READ_SIDE_ENABLED: 'true',
      COS_READ_SIDE_CONFIG__PORT__orders: '7000',
    });
    expect(problems).toEqual([
      'COS_PORT="abc": expected an integer port 1..65535',
      'COS_EVENTS_BATCH_THRESHOLD="-1": expected an integer >= 1',
      'COS_DISABLE_SNAPSHOT="maybe": expected true or false (or 1 / 0)',
      'COS_NUM_SHARDS="12": expected a power of two from 1 to 10000 (1, 2, 4, ..., 8192)',
      'WRITE_SIDE_HANDLER_SERVICE_HOST is unset: expected the host of your WriteSideHandlerService (alias COS_WRITE_SIDE_HOST)',
      'read side "orders" has no host: expected COS_READ_SIDE_CONFIG__HOST__orders to be set',
      'LOG_LEVEL="loud": expected one of trace, debug, info, warn, error',
    ]);
    const error = configErrorOf({ COS_PORT: 'abc', COS_NUM_SHARDS: '12' });
    expect(error.message).toBe(
      'invalid configuration:\n' +
        '  - COS_PORT="abc": expected an integer port 1..65535\n' +
        '  - COS_NUM_SHARDS="12": expected a power of two from 1 to 10000 (1, 2, 4, ..., 8192)',
    );
  });

  it('shortens very long values', () => {
    const [problem] = problemsOf({ COS_PORT: '9'.repeat(1000) });
    expect(problem).toBe(`COS_PORT="${'9'.repeat(200)}...": expected an integer port 1..65535`);
  });
});

describe('timeouts', () => {
  it('warns when a handler call may outlast the whole command', () => {
    expect(load({ COS_COMMAND_HANDLER_TIMEOUT: '2', COS_GRPC_CALLS_TIMEOUT: '3000' }).warnings).toEqual([
      'COS_GRPC_CALLS_TIMEOUT (3000 ms) is longer than COS_COMMAND_HANDLER_TIMEOUT (2 s): handler calls are cut short by the command deadline',
    ]);
  });
});

describe('telemetry', () => {
  it('warns that TRACE_HOST is not used when an OTLP endpoint is set', () => {
    const { config, warnings } = load({ OTEL_EXPORTER_OTLP_ENDPOINT: 'https://otel.example.com', TRACE_HOST: 'jaeger' });
    expect(config.telemetry.otlpEndpoint).toBe('https://otel.example.com');
    expect(warnings).toEqual(['OTEL_EXPORTER_OTLP_ENDPOINT is set, so TRACE_HOST and TRACE_PORT are not used']);
    expect(config.telemetry.tracesEndpoint).toBe('https://otel.example.com/v1/traces');
  });

  it('exports no traces unless a collector is named', () => {
    expect(load({}).config.telemetry.tracesEndpoint).toBeUndefined();
  });

  it('exports to TRACE_HOST:TRACE_PORT over OTLP/HTTP when either is set', () => {
    expect(load({ TRACE_HOST: 'jaeger' }).config.telemetry.tracesEndpoint).toBe('http://jaeger:4318/v1/traces');
    expect(load({ TRACE_PORT: '4000' }).config.telemetry.tracesEndpoint).toBe('http://localhost:4000/v1/traces');
  });

  it('appends /v1/traces to the OTLP base endpoint once', () => {
    expect(load({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' }).config.telemetry.tracesEndpoint).toBe(
      'http://collector:4318/v1/traces',
    );
  });

  it('uses OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as is, over every other target, with a warning for each unused one', () => {
    const { config, warnings } = load({
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://collector:4318',
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://other:4318',
      TRACE_HOST: 'jaeger',
    });
    expect(config.telemetry.tracesEndpoint).toBe('http://collector:4318');
    expect(config.telemetry.otlpEndpoint).toBe('http://other:4318');
    expect(warnings).toEqual([
      'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set, so OTEL_EXPORTER_OTLP_ENDPOINT is not used',
      'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set, so TRACE_HOST and TRACE_PORT are not used',
    ]);
    expect(load({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://c/t', TRACE_PORT: '4000' }).warnings).toEqual([
      'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set, so TRACE_HOST and TRACE_PORT are not used',
    ]);
  });

  it('takes the traces protocol over the general one, silently, as the OpenTelemetry spec says', () => {
    const { config, warnings } = load({
      OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/protobuf',
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
    });
    expect(config.telemetry.tracesProtocol).toBe('http/protobuf');
    expect(warnings).toEqual([]);
  });

  it('takes the ratio for both traceidratio samplers, and warns that the others ignore it', () => {
    const ratioOf = (sampler: string) =>
      load({ OTEL_TRACES_SAMPLER: sampler, OTEL_TRACES_SAMPLER_ARG: '0' }).config.telemetry.tracesSampler.ratio;
    expect(ratioOf('traceidratio')).toBe(0);
    expect(ratioOf('parentbased_traceidratio')).toBe(0);
    expect(load({ OTEL_TRACES_SAMPLER: 'traceidratio' }).config.telemetry.tracesSampler.ratio).toBe(1);
    const { warnings } = load({ OTEL_TRACES_SAMPLER_ARG: '0.5' });
    expect(warnings).toEqual([
      'OTEL_TRACES_SAMPLER_ARG is ignored: OTEL_TRACES_SAMPLER=parentbased_always_on takes no ratio',
    ]);
  });

  it('keeps the default batch size when the queue is at least as large', () => {
    expect(load({ OTEL_BSP_MAX_QUEUE_SIZE: '4096' }).config.telemetry.tracesBatch.maxExportBatchSize).toBe(512);
    expect(
      load({ OTEL_BSP_MAX_QUEUE_SIZE: '100', OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '100' }).config.telemetry.tracesBatch,
    ).toMatchObject({ maxQueueSize: 100, maxExportBatchSize: 100 });
  });
});

describe('frozen', () => {
  it('cannot be changed, at any depth', () => {
    const loaded = load({ ...PG, COS_KAFKA_BROKER: 'k:9092', READ_SIDE_HANDLER_SERVICE_HOST: 'rs', READ_SIDE_HANDLER_SERVICE_PORT: '1' });
    const config = loaded.config as unknown as Record<string, Record<string, unknown>>;
    expect(Object.isFrozen(loaded)).toBe(true);
    expect(Object.isFrozen(loaded.warnings)).toBe(true);
    expect(() => {
      config['server']!['port'] = 1;
    }).toThrow(TypeError);
    expect(() => {
      config['store']!['password'] = 'x';
    }).toThrow(TypeError);
    expect(() => {
      (loaded.config.kafka!.brokers as string[]).push('other:1');
    }).toThrow(TypeError);
    expect(() => {
      (loaded.config.readSide.readSides[0] as unknown as Record<string, unknown>)['host'] = 'x';
    }).toThrow(TypeError);
    expect(() => {
      config['newSection'] = {};
    }).toThrow(TypeError);
    expect(loaded.config.server.port).toBe(9000);
  });
});

describe('options', () => {
  it('resolves COS_DATA_DIR against process.cwd() when no cwd is given', () => {
    const { config } = loadConfig({ env: { ...REQUIRED } });
    expect(config.store).toEqual({ kind: 'embedded', dataDir: resolve(process.cwd(), '.cos-data'), schema: 'public' });
  });
});

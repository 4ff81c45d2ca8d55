import { resolve } from 'node:path';
import { ConfigError } from '@chiefofstate/core';
import { readPeerTls, readTlsReloadInterval, readWriteSideTls } from './client-tls.js';
import { deepFreeze } from './deep-freeze.js';
import { EnvReader, showValue, type Env, type Report } from './env-reader.js';
import { readPostgresTls, warnUnusedPostgresTls } from './postgres-tls.js';
import { readFrontEnds } from './front-ends.js';
import { readPublishers } from './publishers.js';
import { readReadSides } from './read-sides.js';
import { readBreaker, readKeepalive, readPoolSize, readWriteSideProtocol, warnGrpcOnly } from './resilience.js';
import { readSecurity } from './security.js';
import type {
  ClusterConfig,
  CosConfig,
  OtlpProtocol,
  PostgresStoreConfig,
  PostgresTlsConfig,
  ReadSidesConfig,
  StoreConfig,
  TelemetryConfig,
  TimeoutConfig,
  TraceBatchConfig,
  TraceSamplerConfig,
  WriteSideConfig,
} from './types.js';
import {
  boolean,
  deploymentMode,
  headerNames,
  host,
  httpUrl,
  integerIn,
  clusterSecret,
  ipAddress,
  kafkaBrokers,
  logLevel,
  logStyle,
  messageNames,
  milliseconds,
  otlpProtocol,
  port,
  positiveInteger,
  ratio,
  secondsAsMs,
  secret,
  shardCount,
  sqlIdentifier,
  text,
  traceSampler,
} from './values.js';
import { KNOWN_VARIABLES, PUBLISHER_ENV_PREFIX, READ_SIDE_ENV_PREFIX } from './variables.js';

export interface LoadConfigOptions {
  /** the variables to read, usually `process.env`; the library never reads it by itself */
  readonly env: Env;
  /** base of relative paths (COS_DATA_DIR, COS_READ_SIDE_CONFIG); default `process.cwd()` */
  readonly cwd?: string;
}

export interface LoadedConfig {
  readonly config: CosConfig;
  /** things worth logging at start-up that do not stop it (aliases shadowed, ignored values) */
  readonly warnings: readonly string[];
}

export const DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;
/** OTLP over HTTP; the original's 14268 was Jaeger's HTTP Thrift collector, which we do not speak. */
export const DEFAULT_TRACE_PORT = 4318;
export const DEFAULT_POOL_MAX = 5;

const POSTGRES_DEFAULTS = { port: 5432, user: 'postgres', password: 'changeme', database: 'postgres' } as const;

/**
 * Reads, validates and freezes the whole configuration. Every problem is collected before
 * anything is thrown, so one start-up attempt shows everything that needs fixing.
 *
 * @throws ConfigError listing each problem (variable, value, expectation); secrets shown as `***`
 */
export function loadConfig(options: LoadConfigOptions): LoadedConfig {
  const problems: string[] = [];
  // a Set: the same alias pair may be looked up more than once
  const warnings = new Set<string>();
  const report: Report = {
    problem: (message) => problems.push(message),
    warn: (message) => warnings.add(message),
  };
  const reader = new EnvReader(options.env, report);
  const cwd = options.cwd ?? process.cwd();

  const server = {
    address: reader.readOr(host, 'COS_ADDRESS', '0.0.0.0'),
    port: reader.readOr(port, 'COS_PORT', 9000),
    maxMessageBytes: reader.readOr(
      integerIn(1, 2 ** 31 - 1, 'an integer number of bytes 1..2147483647'),
      'COS_GRPC_MAX_MESSAGE_BYTES',
      DEFAULT_MAX_MESSAGE_BYTES,
    ),
    maxConcurrentStreams: reader.readOr(
      integerIn(1, 2 ** 31 - 1, 'an integer number of streams 1..2147483647'),
      'COS_GRPC_MAX_CONCURRENT_STREAMS',
      256,
    ),
    maxHeaderBytes: reader.readOr(
      integerIn(1024, 16 * 1024 * 1024, 'an integer number of bytes 1024..16777216'),
      'COS_GRPC_MAX_HEADER_BYTES',
      64 * 1024,
    ),
    receiveTimeoutMs: reader.readOr(secondsAsMs, 'COS_GRPC_RECEIVE_TIMEOUT', 10_000),
    idleTimeoutMs: reader.readOr(secondsAsMs, 'COS_GRPC_IDLE_TIMEOUT', 300_000),
    unaryFastPath: reader.readOr(boolean, 'COS_GRPC_SERVER_FAST_PATH', true),
    clientFastTransport: reader.readOr(boolean, 'COS_GRPC_CLIENT_FAST_PATH', true),
  };
  const tlsReloadIntervalMs = readTlsReloadInterval(reader);
  const postgresTls = readPostgresTls(reader, cwd, tlsReloadIntervalMs);
  const store = readStore(reader, cwd, postgresTls);
  const readSideOffsetStore = readOffsetStore(reader, store, postgresTls);
  warnUnusedPostgresTls(reader, [store, readSideOffsetStore]);
  const brokers = reader.read(kafkaBrokers, 'COS_KAFKA_BROKER');
  const journal = {
    eventsBatchThreshold: reader.readOr(positiveInteger, 'COS_EVENTS_BATCH_THRESHOLD', 100),
    logicalDeletion: reader.readOr(boolean, 'COS_JOURNAL_LOGICAL_DELETION', false),
    maxQueuedAppends: reader.readOr(positiveInteger, 'COS_JOURNAL_MAX_QUEUED_APPENDS', 8192),
    idempotencyRetentionMs: reader.readOr(secondsAsMs, 'COS_IDEMPOTENCY_RETENTION', 24 * 60 * 60 * 1000),
  };
  const snapshots = {
    enabled: !reader.readOr(boolean, 'COS_DISABLE_SNAPSHOT', false),
    frequency: reader.readOr(positiveInteger, 'COS_SNAPSHOT_FREQUENCY', 100),
    retain: reader.readOr(positiveInteger, 'COS_NUM_SNAPSHOTS_TO_RETAIN', 2),
  };
  const numShards = reader.readOr(shardCount, 'COS_NUM_SHARDS', 16);
  // outbound TLS (client-tls): the write handler, the read sides and the peers
  const writeSide = readWriteSide(reader, cwd, tlsReloadIntervalMs);
  const timeouts = readTimeouts(reader);
  const keepalive = readKeepalive(reader);
  const entities = {
    passivateAfterMs: reader.readOr(secondsAsMs, 'COS_PASSIVATE_AFTER', 120_000),
    maxActive: reader.readOr(positiveInteger, 'COS_MAX_ACTIVE_ENTITIES', 100_000),
    cacheMaxBytes: reader.readOr(positiveInteger, 'COS_ENTITY_CACHE_MAX_BYTES', 256 * 1024 * 1024),
    mailboxSize: reader.readOr(positiveInteger, 'COS_ENTITY_MAILBOX_SIZE', 256),
    maxInFlightCommands: reader.readOr(positiveInteger, 'COS_MAX_IN_FLIGHT_COMMANDS', 4096),
  };
  const readSide = readReadSideSection(reader, report, problems, cwd, timeouts.handlerCallMs, tlsReloadIntervalMs);
  const publishers = readPublishers({ reader, cwd });
  // publishers run as read sides of the same engine: one id names one stream set and its offsets
  for (const publisher of publishers) {
    if (readSide.readSides.some((side) => side.readSideId === publisher.publisherId)) {
      report.problem(
        `publisher ${JSON.stringify(publisher.publisherId)} has the id of a read side: expected ids unique among read sides and publishers (they share offsets and ReadSideManagerService)`,
      );
    }
  }
  const telemetry = readTelemetry(reader, server);
  const cluster = { ...readCluster(reader, store), peerTls: readPeerTls(reader, cwd, tlsReloadIntervalMs) };
  const security = readSecurity(reader, cwd, readSide.enabled, tlsReloadIntervalMs);
  const subscriptions = {
    enabled: reader.readOr(boolean, 'COS_SUBSCRIPTION_ENABLED', false),
    maxActive: reader.readOr(positiveInteger, 'COS_SUBSCRIPTION_MAX_ACTIVE', 1000),
  };
  const frontEnds = readFrontEnds(reader, cwd, server, store.kind === 'postgres');
  const log = {
    level: reader.readOr(logLevel, 'LOG_LEVEL', 'info'),
    style: reader.readOr(logStyle, 'LOG_STYLE', 'JSON'),
  };
  const killAfterCommitOf = reader.read(text, 'COS_TEST_KILL_AFTER_COMMIT');
  warnUnknown(reader);

  if (problems.length > 0) throw new ConfigError(problems);

  const config: CosConfig = {
    server,
    store,
    readSideOffsetStore,
    kafka: brokers !== undefined && brokers.length > 0 ? { brokers } : undefined,
    publishers,
    journal,
    snapshots,
    numShards,
    writeSide,
    timeouts,
    keepalive,
    entities,
    readSide,
    subscriptions,
    frontEnds,
    telemetry,
    cluster,
    security,
    log,
    ...(killAfterCommitOf !== undefined ? { testHooks: { killAfterCommitOf } } : {}),
  };
  return deepFreeze({ config, warnings: [...warnings] });
}

const STORE = {
  host: ['COS_POSTGRES_HOST', 'COS_DB_HOST'],
  port: ['COS_POSTGRES_PORT', 'COS_DB_PORT'],
  user: ['COS_POSTGRES_USER', 'COS_DB_USER'],
  password: ['COS_POSTGRES_PASSWORD', 'COS_DB_PASSWORD'],
  database: ['COS_POSTGRES_DB', 'COS_DB_NAME'],
  schema: ['COS_POSTGRES_SCHEMA', 'COS_DB_SCHEMA'],
} as const;

function readStore(reader: EnvReader, cwd: string, tls: PostgresTlsConfig | undefined): StoreConfig {
  const [hostName, ...hostAliases] = STORE.host;
  // every value is validated even when the embedded store makes it moot: a typo stays a typo
  const storeHost = reader.read(host, hostName, hostAliases);
  const storePort = reader.readOr(port, STORE.port[0], POSTGRES_DEFAULTS.port, STORE.port.slice(1));
  const user = reader.readOr(text, STORE.user[0], POSTGRES_DEFAULTS.user, STORE.user.slice(1));
  const password = reader.readOr(secret, STORE.password[0], POSTGRES_DEFAULTS.password, STORE.password.slice(1));
  const database = reader.readOr(text, STORE.database[0], POSTGRES_DEFAULTS.database, STORE.database.slice(1));
  const schema = reader.readOr(sqlIdentifier, STORE.schema[0], 'public', STORE.schema.slice(1));
  const poolMax = reader.readOr(integerIn(1, 1000), 'COS_DB_POOL_MAX_SIZE', DEFAULT_POOL_MAX);
  const bounds = readStoreBounds(reader);

  if (!reader.isSet(hostName, hostAliases)) {
    for (const names of [STORE.port, STORE.user, STORE.password, STORE.database, ['COS_DB_POOL_MAX_SIZE'], ...STORE_BOUNDS]) {
      const found = reader.lookup(names[0]!, names.slice(1));
      if (found !== undefined) {
        reader.report.warn(`${found.name} is ignored: COS_POSTGRES_HOST is unset, so the embedded store is used`);
      }
    }
    const dataDir = reader.raw('COS_DATA_DIR')?.trim() ?? './.cos-data';
    return { kind: 'embedded', dataDir: resolve(cwd, dataDir), schema };
  }
  if (reader.isSet('COS_DATA_DIR')) {
    reader.report.warn('COS_DATA_DIR is ignored: COS_POSTGRES_HOST is set, so the embedded store is not used');
  }
  return { kind: 'postgres', host: storeHost ?? '', port: storePort, user, password, database, schema, poolMax, ...bounds, ...(tls ? { tls } : {}) };
}

const STORE_BOUNDS = [
  ['COS_DB_CONNECT_TIMEOUT'],
  ['COS_DB_STATEMENT_TIMEOUT'],
  ['COS_DB_IDLE_IN_TRANSACTION_TIMEOUT'],
  ['COS_DB_POOL_MAX_WAITING'],
] as const;

type StoreBounds = Pick<PostgresStoreConfig, 'connectTimeoutMs' | 'statementTimeoutMs' | 'idleInTransactionTimeoutMs' | 'poolMaxWaiting'>;

const DEFAULT_STORE_BOUNDS: StoreBounds = {
  connectTimeoutMs: 5000,
  statementTimeoutMs: 5000,
  idleInTransactionTimeoutMs: 10_000,
  poolMaxWaiting: 1000,
};

/** How long the store may keep a caller waiting, and how many may wait (also the offset store's). */
function readStoreBounds(reader: EnvReader): StoreBounds {
  return {
    connectTimeoutMs: reader.readOr(secondsAsMs, 'COS_DB_CONNECT_TIMEOUT', DEFAULT_STORE_BOUNDS.connectTimeoutMs),
    statementTimeoutMs: reader.readOr(secondsAsMs, 'COS_DB_STATEMENT_TIMEOUT', DEFAULT_STORE_BOUNDS.statementTimeoutMs),
    idleInTransactionTimeoutMs: reader.readOr(
      secondsAsMs,
      'COS_DB_IDLE_IN_TRANSACTION_TIMEOUT',
      DEFAULT_STORE_BOUNDS.idleInTransactionTimeoutMs,
    ),
    poolMaxWaiting: reader.readOr(integerIn(1, 1_000_000), 'COS_DB_POOL_MAX_WAITING', DEFAULT_STORE_BOUNDS.poolMaxWaiting),
  };
}

const OFFSET = {
  host: 'COS_READ_SIDE_OFFSET_DB_HOST',
  port: 'COS_READ_SIDE_OFFSET_DB_PORT',
  user: 'COS_READ_SIDE_OFFSET_DB_USER',
  password: 'COS_READ_SIDE_OFFSET_DB_PASSWORD',
  database: 'COS_READ_SIDE_OFFSET_DB',
  schema: 'COS_READ_SIDE_OFFSET_DB_SCHEMA',
} as const;

/** Each unset COS_READ_SIDE_OFFSET_DB* value is the journal store's. */
function readOffsetStore(reader: EnvReader, store: StoreConfig, tls: PostgresTlsConfig | undefined): StoreConfig {
  if (!Object.values(OFFSET).some((name) => reader.isSet(name))) return store;
  const offsetHost = reader.read(host, OFFSET.host);
  const values = {
    port: reader.read(port, OFFSET.port),
    user: reader.read(text, OFFSET.user),
    password: reader.read(secret, OFFSET.password),
    database: reader.read(text, OFFSET.database),
    schema: reader.read(sqlIdentifier, OFFSET.schema),
  };

  if (reader.isSet(OFFSET.host) || store.kind === 'postgres') {
    const base: PostgresStoreConfig =
      store.kind === 'postgres'
        ? store
        : {
            kind: 'postgres',
            host: '',
            ...POSTGRES_DEFAULTS,
            schema: store.schema,
            poolMax: DEFAULT_POOL_MAX,
            ...DEFAULT_STORE_BOUNDS,
          };
    return {
      kind: 'postgres',
      host: offsetHost ?? base.host,
      port: values.port ?? base.port,
      user: values.user ?? base.user,
      password: values.password ?? base.password,
      database: values.database ?? base.database,
      schema: values.schema ?? base.schema,
      poolMax: base.poolMax,
      connectTimeoutMs: base.connectTimeoutMs,
      statementTimeoutMs: base.statementTimeoutMs,
      idleInTransactionTimeoutMs: base.idleInTransactionTimeoutMs,
      poolMaxWaiting: base.poolMaxWaiting,
      // one TLS setting for both stores
      ...(tls ? { tls } : {}),
    };
  }
  for (const name of [OFFSET.port, OFFSET.user, OFFSET.password, OFFSET.database]) {
    if (reader.isSet(name)) {
      reader.report.warn(`${name} is ignored: neither COS_READ_SIDE_OFFSET_DB_HOST nor COS_POSTGRES_HOST is set`);
    }
  }
  return { kind: 'embedded', dataDir: store.dataDir, schema: values.schema ?? store.schema };
}

function readWriteSide(reader: EnvReader, cwd: string, tlsReloadIntervalMs: number): WriteSideConfig {
  const required = (name: string, alias: string, what: string) => {
    if (!reader.isSet(name, [alias])) {
      reader.report.problem(`${name} is unset: expected ${what} of your WriteSideHandlerService (alias ${alias})`);
    }
  };
  required('WRITE_SIDE_HANDLER_SERVICE_HOST', 'COS_WRITE_SIDE_HOST', 'the host');
  required('WRITE_SIDE_HANDLER_SERVICE_PORT', 'COS_WRITE_SIDE_PORT', 'the port');

  const stateName = 'HANDLER_SERVICE_STATE_PROTO';
  const eventsName = 'HANDLER_SERVICE_EVENTS_PROTOS';
  const stateTypes = reader.readOr(messageNames, stateName, [], ['COS_WRITE_SIDE_STATE_PROTOS']);
  const eventTypes = reader.readOr(messageNames, eventsName, [], ['COS_WRITE_SIDE_EVENT_PROTOS']);
  const forcedBy = reader.lookup('COS_WRITE_SIDE_PROTO_VALIDATION');
  const forced = forcedBy === undefined ? undefined : reader.parse(boolean, forcedBy);
  const listed = stateTypes.length > 0 || eventTypes.length > 0;
  const enabled = forced ?? listed;
  if (forced === true && !listed) {
    reader.report.problem(
      `COS_WRITE_SIDE_PROTO_VALIDATION=${showValue(forcedBy!.name, forcedBy!.value)}: expected ${stateName} or ${eventsName} to list the allowed types (with no list, every event would be rejected)`,
    );
  } else if (enabled && stateTypes.length === 0) {
    reader.report.warn(`type validation is on and ${stateName} lists no type: every resulting state will be rejected`);
  } else if (enabled && eventTypes.length === 0) {
    reader.report.warn(`type validation is on and ${eventsName} lists no type: every event will be rejected`);
  } else if (forced === false && listed) {
    reader.report.warn('COS_WRITE_SIDE_PROTO_VALIDATION=false: the listed state and event types are not validated');
  }

  const useTls = reader.readOr(boolean, 'COS_WRITE_SIDE_USE_TLS', false);
  const protocol = readWriteSideProtocol(reader);
  warnGrpcOnly(reader, protocol);
  return {
    host: reader.read(host, 'WRITE_SIDE_HANDLER_SERVICE_HOST', ['COS_WRITE_SIDE_HOST']) ?? '',
    port: reader.read(port, 'WRITE_SIDE_HANDLER_SERVICE_PORT', ['COS_WRITE_SIDE_PORT']) ?? 0,
    protocol,
    poolSize: readPoolSize(reader),
    breaker: readBreaker(reader, 'WRITE_SIDE', 60_000),
    useTls,
    tls: readWriteSideTls(reader, cwd, useTls, tlsReloadIntervalMs),
    validation: { enabled, stateTypes, eventTypes },
    propagatedHeaders: reader.readOr(headerNames, 'COS_WRITE_SIDE_PROPAGATED_HEADERS', []),
    persistedHeaders: reader.readOr(headerNames, 'COS_WRITE_PERSISTED_HEADERS', []),
  };
}

function readTimeouts(reader: EnvReader): TimeoutConfig {
  const commandMs = reader.readOr(secondsAsMs, 'COS_COMMAND_HANDLER_TIMEOUT', 5000);
  const handlerCallMs = reader.readOr(milliseconds, 'COS_GRPC_CALLS_TIMEOUT', 5000);
  if (handlerCallMs > commandMs) {
    reader.report.warn(
      `COS_GRPC_CALLS_TIMEOUT (${handlerCallMs} ms) is longer than COS_COMMAND_HANDLER_TIMEOUT (${commandMs / 1000} s): handler calls are cut short by the command deadline`,
    );
  }
  return { commandMs, handlerCallMs };
}

function readReadSideSection(
  reader: EnvReader,
  report: Report,
  problems: readonly string[],
  cwd: string,
  defaultTimeoutMs: number,
  tlsReloadIntervalMs: number,
): ReadSidesConfig {
  const enabled = reader.readOr(boolean, 'COS_READ_SIDE_ENABLED', false);
  // read sides are always parsed, but only stop start-up when they are going to run
  const sideReader = enabled
    ? reader
    : reader.withReport({
        problem: (message) => report.warn(`read sides are off (COS_READ_SIDE_ENABLED=false); ignored: ${message}`),
        warn: report.warn,
      });
  const problemsBefore = problems.length;
  const readSides = readReadSides({ reader: sideReader, cwd, defaultTimeoutMs, tlsReloadIntervalMs });
  if (enabled && readSides.length === 0 && problems.length === problemsBefore) {
    report.problem(
      'READ_SIDE_HANDLER_SERVICE_HOST is unset: expected a read side host, required when COS_READ_SIDE_ENABLED=true and no other read side is configured (or configure read sides with COS_READ_SIDE_CONFIG or COS_READ_SIDE_CONFIG__HOST__<ID>)',
    );
  }
  if (enabled && readSides.length > 0 && readSides.every((side) => !side.enabled)) {
    report.warn('COS_READ_SIDE_ENABLED=true but every configured read side has enabled=false');
  }
  return { enabled, readSides, breaker: readBreaker(reader, 'READ_SIDE', 10_000) };
}

function readTelemetry(reader: EnvReader, server: { address: string; port: number }): TelemetryConfig {
  const metricsFound = reader.lookup('COS_METRICS_PORT');
  const metricsPort = (metricsFound && reader.parse(port, metricsFound)) ?? 9102;
  if (metricsPort === server.port) {
    reader.report.problem(
      `COS_METRICS_PORT=${JSON.stringify(String(metricsPort))}: expected a port other than COS_PORT (${server.port})`,
    );
  }
  return {
    serviceName: reader.readOr(text, 'COS_SERVICE_NAME', 'chiefofstate', ['OTEL_SERVICE_NAME']),
    teamName: reader.read(text, 'TEAM_NAME'),
    ...readTraceTarget(reader),
    tracesProtocol: readTraceProtocol(reader),
    tracesSampler: readTraceSampler(reader),
    tracesBatch: readTraceBatch(reader),
    metricsPort,
    metricsAddress: reader.readOr(host, 'COS_METRICS_ADDRESS', server.address),
  };
}

type TraceTarget = Pick<
  TelemetryConfig,
  'traceHost' | 'tracePort' | 'otlpEndpoint' | 'otlpTracesEndpoint' | 'tracesEndpoint'
>;

/** The first set of: the full traces URL, the OTLP base URL, TRACE_HOST/TRACE_PORT. */
function readTraceTarget(reader: EnvReader): TraceTarget {
  const otlpTracesEndpoint = reader.read(httpUrl, 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT');
  const otlpEndpoint = reader.read(httpUrl, 'OTEL_EXPORTER_OTLP_ENDPOINT');
  const traceHost = reader.readOr(host, 'TRACE_HOST', 'localhost');
  const tracePort = reader.readOr(port, 'TRACE_PORT', DEFAULT_TRACE_PORT);
  // Traces are exported only when a collector is named: the localhost default alone must not
  // make every process retry an absent collector and log about it.
  const explicitTraceTarget = reader.isSet('TRACE_HOST') || reader.isSet('TRACE_PORT');
  const used = otlpTracesEndpoint !== undefined ? 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT' : 'OTEL_EXPORTER_OTLP_ENDPOINT';
  if (otlpTracesEndpoint !== undefined && otlpEndpoint !== undefined) {
    reader.report.warn(`${used} is set, so OTEL_EXPORTER_OTLP_ENDPOINT is not used`);
  }
  if ((otlpTracesEndpoint !== undefined || otlpEndpoint !== undefined) && explicitTraceTarget) {
    reader.report.warn(`${used} is set, so TRACE_HOST and TRACE_PORT are not used`);
  }
  const tracesEndpoint =
    otlpTracesEndpoint ??
    (otlpEndpoint !== undefined
      ? `${otlpEndpoint.replace(/\/+$/, '')}/v1/traces`
      : explicitTraceTarget
        ? `http://${traceHost.includes(':') ? `[${traceHost}]` : traceHost}:${tracePort}/v1/traces`
        : undefined);
  return { traceHost, tracePort, otlpEndpoint, otlpTracesEndpoint, tracesEndpoint };
}

/**
 * The signal-specific variable wins over the general one (OpenTelemetry spec), so both being set
 * is normal and not warned about; each is still validated. http/protobuf is the spec's default.
 */
function readTraceProtocol(reader: EnvReader): OtlpProtocol {
  const tracesProtocol = reader.read(otlpProtocol, 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL');
  const protocol = reader.read(otlpProtocol, 'OTEL_EXPORTER_OTLP_PROTOCOL');
  return tracesProtocol ?? protocol ?? 'http/protobuf';
}

function readTraceSampler(reader: EnvReader): TraceSamplerConfig {
  const name = reader.readOr(traceSampler, 'OTEL_TRACES_SAMPLER', 'parentbased_always_on');
  const samplerRatio = reader.read(ratio, 'OTEL_TRACES_SAMPLER_ARG');
  if (samplerRatio !== undefined && !name.endsWith('traceidratio')) {
    reader.report.warn(`OTEL_TRACES_SAMPLER_ARG is ignored: OTEL_TRACES_SAMPLER=${name} takes no ratio`);
  }
  return { name, ratio: samplerRatio ?? 1 };
}

/** The OpenTelemetry spec's defaults; the batch size default shrinks to a smaller queue. */
function readTraceBatch(reader: EnvReader): TraceBatchConfig {
  const maxQueueSize = reader.readOr(positiveInteger, 'OTEL_BSP_MAX_QUEUE_SIZE', 2048);
  const batchSize = reader.read(positiveInteger, 'OTEL_BSP_MAX_EXPORT_BATCH_SIZE');
  if (batchSize !== undefined && batchSize > maxQueueSize) {
    const queue = reader.isSet('OTEL_BSP_MAX_QUEUE_SIZE') ? `${maxQueueSize}` : `${maxQueueSize}, its default`;
    reader.report.problem(
      `OTEL_BSP_MAX_EXPORT_BATCH_SIZE=${JSON.stringify(String(batchSize))}: expected at most OTEL_BSP_MAX_QUEUE_SIZE (${queue})`,
    );
  }
  return {
    scheduleDelayMs: reader.readOr(milliseconds, 'OTEL_BSP_SCHEDULE_DELAY', 5000),
    exportTimeoutMs: reader.readOr(milliseconds, 'OTEL_BSP_EXPORT_TIMEOUT', 30_000),
    maxQueueSize,
    maxExportBatchSize: batchSize ?? Math.min(512, maxQueueSize),
  };
}

function readCluster(reader: EnvReader, store: StoreConfig): Omit<ClusterConfig, 'peerTls'> {
  const mode = reader.readOr(deploymentMode, 'COS_DEPLOYMENT_MODE', 'docker');
  const [countName, ignoredName] =
    mode === 'docker'
      ? ['COS_DOCKER_REPLICA_COUNT', 'COS_KUBERNETES_REPLICA_COUNT']
      : ['COS_KUBERNETES_REPLICA_COUNT', 'COS_DOCKER_REPLICA_COUNT'];
  const countFound = reader.lookup(countName, ['COS_REPLICA_COUNT']);
  const replicaCount = (countFound && reader.parse(positiveInteger, countFound)) ?? 1;
  if (reader.isSet(ignoredName)) {
    reader.report.warn(`${ignoredName} is ignored: COS_DEPLOYMENT_MODE is ${mode}`);
  }
  if (store.kind === 'embedded' && replicaCount > 1) {
    reader.report.problem(
      `${countFound!.name}=${JSON.stringify(countFound!.value.trim())}: expected 1, because the embedded store serves one process; set COS_POSTGRES_HOST to a PostgreSQL shared by the replicas to run several`,
    );
  }
  return {
    mode,
    dockerServiceName: reader.readOr(host, 'COS_DOCKER_SERVICE_NAME', 'chiefofstate'),
    replicaCount,
    podIp: reader.read(ipAddress, 'POD_IP'),
    kubernetesAppLabel: reader.read(text, 'COS_KUBERNETES_APP_LABEL'),
    secret: reader.read(clusterSecret, 'COS_CLUSTER_SECRET'),
    maxClockSkewMs: reader.readOr(secondsAsMs, 'COS_CLUSTER_MAX_CLOCK_SKEW', 30_000),
    fastTakeover: reader.readOr(boolean, 'COS_CLUSTER_FAST_TAKEOVER', true),
  };
}

/** Kubernetes service links for a Service named "cos" (COS_SERVICE_HOST, COS_PORT_9000_TCP, ...). */
const SERVICE_LINK = /^COS_(SERVICE_HOST|SERVICE_PORT(_\w+)?|PORT_\d+_(TCP|UDP|SCTP)(_\w+)?)$/;

function warnUnknown(reader: EnvReader): void {
  for (const name of reader.names()) {
    if (!name.startsWith('COS_') || KNOWN_VARIABLES.has(name) || name.startsWith(READ_SIDE_ENV_PREFIX) || name.startsWith(PUBLISHER_ENV_PREFIX)) continue;
    if (SERVICE_LINK.test(name)) continue;
    const suggestion = closest(name);
    reader.report.warn(
      `${name} is not a COS variable and is ignored${suggestion === undefined ? '' : `; did you mean ${suggestion}?`}`,
    );
  }
}

function closest(name: string): string | undefined {
  let best: { name: string; distance: number } | undefined;
  for (const known of KNOWN_VARIABLES) {
    const distance = editDistance(name, known);
    if (distance <= 3 && (best === undefined || distance < best.distance)) best = { name: known, distance };
  }
  return best?.name;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, index) => index);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1);
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, substitution);
    }
    previous = current;
  }
  return previous[b.length]!;
}

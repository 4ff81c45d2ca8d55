import { networkInterfaces } from 'node:os';
import { createEntityRouter, createForwardingAuth, entityShardStreams, type EntityRouter } from '@chiefofstate/cluster';
import { logDatabaseStatus, openCosStore, openSidePool, startReadSides } from '@chiefofstate/composition';
import { readTypeRegistry, type CosConfig } from '@chiefofstate/config';
import { createEntityRuntime } from '@chiefofstate/entity';
import {
  createChiefOfStateService,
  createHealthStatus,
  createServerTracingInterceptor,
  createReadSideManagerService,
  listenerSecurityOptions,
  logCallFailure,
  registerReflection,
  ServingStatus,
  startGrpcServer,
  startHttpFrontEnd,
  type CommandProcessor,
  type GrpcServer,
  type HealthStatus,
  type HttpFrontEnd,
} from '@chiefofstate/grpc-api';
import { createPeerClients, createReachabilityProbe, keepaliveOf, watchClientTlsLogged } from '@chiefofstate/handler-client';
import { createJournal, JOURNAL_NOTIFY_CHANNEL, startKeyExpiry } from '@chiefofstate/journal';
import { createLeaseCoordinator, loadClusterSecret } from '@chiefofstate/leases';
import type { Logger } from '@chiefofstate/logging';
import { createMetrics, startMetricsServer, type CosMetrics, type MetricsServer } from '@chiefofstate/metrics';
import { notify, type Database } from '@chiefofstate/postgres';
import { ChiefOfStateService, Health, ReadSideManagerService, ReflectionV1, ReflectionV1alpha } from '@chiefofstate/protocol';
import { createDeferredManager } from '@chiefofstate/read-side';
import { createSnapshotStore } from '@chiefofstate/snapshot';
import { createSubscriptionHub, type SubscriptionHub } from '@chiefofstate/subscriptions';
import { ConfigError, ShuttingDownError } from '@chiefofstate/core';
import { createStartUpUndo, type StartUpUndo } from './start-up-undo.js';
import { killAfterCommit } from './test-hooks.js';
import { createWriteHandler } from './write-handler.js';

export interface CosServerOptions {
  readonly config: CosConfig;
  readonly logger: Logger;
}

export interface RunningCosServer {
  /** the bound gRPC port (COS_PORT, or the one picked for port 0); 0 when COS_SERVER_PROTOCOL=http leaves it closed */
  readonly port: number;
  /** the bound port of the HTTP/JSON front end (COS_HTTP_PORT); undefined when COS_SERVER_PROTOCOL=grpc */
  readonly httpPort: number | undefined;
  /** the operations HTTP port: /metrics, /healthz, /readyz (COS_METRICS_PORT) */
  readonly metricsPort: number;
  readonly metrics: CosMetrics;
  readonly health: HealthStatus;
  /** Stops taking calls, finishes in-flight commands, closes pools; within `graceMs`. */
  close(graceMs?: number): Promise<void>;
}

/**
 * Composes COS from its libraries: the store (PostgreSQL or embedded), the journal and
 * snapshots, the client of the user's write handler, the entity runtime, and the gRPC edge.
 * The gRPC port opens first so health probes get NOT_SERVING while the store migrates.
 */
export async function startCosServer(options: CosServerOptions): Promise<RunningCosServer> {
  // anything failing after the gRPC server started closes what was opened, newest first
  const undo = createStartUpUndo(options.logger);
  try {
    return await composeCosServer(options, undo);
  } catch (error) {
    await undo.unwind();
    throw error;
  }
}

async function composeCosServer(options: CosServerOptions, undo: StartUpUndo): Promise<RunningCosServer> {
  const { config, logger } = options;
  if (config.kafka) {
    // Running without the publication would leave Kafka consumers without a word of warning.
    throw new ConfigError([
      'COS_KAFKA_BROKER is set, but this version of chief-of-state has no Kafka sink: unset it, and publish events to NATS JetStream or RabbitMQ with COS_PUBLISHER_CONFIG (sink: nats or rabbitmq)',
    ]);
  }
  // Outbound TLS files (client-tls), read before anything opens: a missing or broken file stops
  // the start with a ConfigError naming the settings; they are re-read while running.
  const writeSideTls = config.writeSide.tls
    ? watchClientTlsLogged({ ...config.writeSide.tls, what: 'write handler', label: 'COS_WRITE_SIDE_TLS_*', logger })
    : undefined;
  undo.push('write handler TLS files', () => writeSideTls?.tls.close());
  // peers over TLS when this replica serves TLS, presenting its own certificate (COS_CLUSTER_TLS_*)
  const peerTls =
    config.store.kind === 'postgres' && config.cluster.peerTls
      ? watchClientTlsLogged({ ...config.cluster.peerTls, what: 'peers', label: 'COS_TLS_CERT_FILE/COS_CLUSTER_TLS_*', logger })
      : undefined;
  undo.push('peer TLS files', () => peerTls?.tls.close());
  // publishers run on the read-side engine: managed by ReadSideManagerService like read sides
  const readSideEngineOn = config.readSide.enabled || config.publishers.some((publisher) => publisher.enabled);
  const health = createHealthStatus({
    services: [ChiefOfStateService.typeName, ...(readSideEngineOn ? [ReadSideManagerService.typeName] : [])],
  });
  const readSideManager = createDeferredManager();
  const metrics = createMetrics();
  const handlerReachable = createReachabilityProbe({ host: config.writeSide.host, port: config.writeSide.port });

  let ready: CommandProcessor | undefined;
  const notReady = () => {
    throw new ShuttingDownError('chief-of-state is starting or stopping');
  };
  // COS_SUBSCRIPTION_ENABLED: built once the store is open; the RPCs refuse until then
  let subscriptions: SubscriptionHub | undefined;
  const cosService = createChiefOfStateService({
    processor: {
      processCommand: (request) => (ready ? ready.processCommand(request) : notReady()),
      getState: (entityId, call) => (ready ? ready.getState(entityId, call) : notReady()),
    },
    headers: {
      propagated: config.writeSide.propagatedHeaders,
      persisted: config.writeSide.persistedHeaders,
    },
    commandTimeoutMs: config.timeouts.commandMs,
    onError: logCallFailure(logger),
    ...(config.subscriptions.enabled
      ? {
          subscriptions: {
            subscribe: (request) => (subscriptions ? subscriptions.subscribe(request) : notReady()),
            subscribeAll: (request) => (subscriptions ? subscriptions.subscribeAll(request) : notReady()),
            unsubscribe: (id) => (subscriptions ? subscriptions.unsubscribe(id) : notReady()),
          },
        }
      : {}),
  });
  // COS_PROTO_DESCRIPTOR_SET: the user's types, for JSON and reflection (checked when the config loaded)
  const registry = readTypeRegistry(config.frontEnds.descriptorSetFiles);
  // what both front ends share: limits, interceptors, TLS and caller authentication, types, CORS
  const edge = {
    maxMessageBytes: config.server.maxMessageBytes,
    maxConcurrentStreams: config.server.maxConcurrentStreams,
    maxHeaderBytes: config.server.maxHeaderBytes,
    receiveTimeoutMs: config.server.receiveTimeoutMs,
    idleTimeoutMs: config.server.idleTimeoutMs,
    unaryFastPath: config.server.unaryFastPath,
    logger,
    // COS_TLS_*, COS_AUTH_*, COS_ADMIN_*, COS_CLUSTER_PEER_NAMES; forwarded calls are checked by the router when clustered
    ...listenerSecurityOptions(config.security, config.store.kind === 'postgres'),
    // probes and tools asking what is served are no traffic worth a trace
    interceptors: [
      createServerTracingInterceptor({
        ignoreServices: [Health.typeName, ReflectionV1.ServerReflection.typeName, ReflectionV1alpha.ServerReflection.typeName],
      }),
      metrics.serverInterceptor,
    ],
    registry,
    corsAllowedOrigins: config.frontEnds.corsAllowedOrigins,
  };
  const served = [
    ChiefOfStateService.typeName,
    ...(readSideEngineOn ? [ReadSideManagerService.typeName] : []),
    Health.typeName,
    ReflectionV1.ServerReflection.typeName,
    ReflectionV1alpha.ServerReflection.typeName,
  ];
  // replicas sharing PostgreSQL forward calls to each other over gRPC: its port opens for them even with COS_SERVER_PROTOCOL=http
  const grpcOn = config.frontEnds.protocol !== 'http' || config.store.kind === 'postgres';
  const server: GrpcServer | undefined = grpcOn
    ? await startGrpcServer({
        host: config.server.address,
        port: config.server.port,
        ...edge,
        routes: (router) => {
          router.service(ChiefOfStateService, cosService);
          if (readSideEngineOn) {
            router.service(
              ReadSideManagerService,
              createReadSideManagerService({
                manager: readSideManager.manager,
                // a fault of COS at error, with the errorId its caller was told
                onError: logCallFailure(logger),
              }),
            );
          }
          router.service(Health, health.service);
          registerReflection(router, { registry, services: () => served });
        },
      })
    : undefined;
  undo.push('gRPC server', () => server?.close(0));
  if (server) logger.info({ address: config.server.address, port: server.port }, 'gRPC server listening');
  const httpFrontEnd: HttpFrontEnd | undefined = config.frontEnds.http
    ? await startHttpFrontEnd({ host: config.frontEnds.http.address, port: config.frontEnds.http.port, ...edge, service: cosService })
    : undefined;
  undo.push('HTTP front end', () => httpFrontEnd?.close(0));
  if (httpFrontEnd) logger.info({ address: config.frontEnds.http!.address, port: httpFrontEnd.port }, 'HTTP/JSON front end listening');
  // not ready while the store (or the leases' connections) is known unreachable
  let storeAvailable = () => true;
  // nor while the write handler's circuit breaker is open (COS_WRITE_SIDE_BREAKER_ENABLED)
  let writeBreakerOpen = () => false;
  const metricsServer: MetricsServer = await startMetricsServer({
    host: config.telemetry.metricsAddress,
    port: config.telemetry.metricsPort,
    tokenFile: config.security.metricsTokenFile,
    reloadIntervalMs: config.security.reloadIntervalMs,
    onReloadError: (error) => logger.warn({ err: error }, 'changed metrics token file cannot be used; the previous tokens stay in use'),
    metrics,
    ready: async () => {
      if (writeBreakerOpen()) return { ready: false, reason: 'write handler circuit breaker open' };
      return ready !== undefined && storeAvailable() && (await handlerReachable());
    },
  });
  undo.push('metrics server', () => metricsServer.close());

  const database: Database = await openCosStore({
    store: config.store,
    applicationName: config.telemetry.serviceName,
    onStatus: logDatabaseStatus(logger, 'store'),
  });
  undo.push('store', () => database.close());
  logger.info({ store: config.store.kind, schema: config.store.schema }, 'store migrated');

  // On PostgreSQL the replicas sharing the database split the entity shards between them: each
  // keeps only its own shards' entities in memory and forwards calls for the others' (see
  // @chiefofstate/cluster). The embedded store has one process, which handles everything.
  const clustered = config.store.kind === 'postgres';
  const journal = createJournal({
    database,
    numShards: config.numShards,
    fencing: clustered,
    batchThreshold: config.journal.eventsBatchThreshold,
    maxQueuedAppends: config.journal.maxQueuedAppends,
    onBatch: (batch) => metrics.observeJournalBatch(batch.events, batch.seconds),
    idempotencyRetentionMs: config.journal.idempotencyRetentionMs,
  });
  undo.push('journal', () => journal.close());
  // retry-safe commands: idempotency keys past COS_IDEMPOTENCY_RETENTION leave in the background
  const keyExpiry = startKeyExpiry({
    database,
    retentionMs: config.journal.idempotencyRetentionMs,
    onExpired: (count) => metrics.observeIdempotency('expired', count),
    onError: (error) => logger.warn({ err: error }, 'idempotency key expiry: round failed, the next one tries again'),
  });
  undo.push('idempotency key expiry', () => keyExpiry.close());
  const snapshots = createSnapshotStore({ database, retain: config.snapshots.retain });
  const { client: writeSide, breaker: writeBreaker } = createWriteHandler(config, logger, {
    ...writeSideTls,
    fastTransport: config.server.clientFastTransport,
    interceptors: [metrics.handlerInterceptor],
  });
  undo.push('write handler client', () => writeSide.close());
  if (writeBreaker) writeBreakerOpen = () => writeBreaker.state() === 'open';
  const validation = config.writeSide.validation;
  const address = `${advertisedHost(config.cluster.podIp)}:${server?.port ?? 0}`;
  let router: EntityRouter | undefined;
  // the (message, fields) logger the entity runtime and the router declare
  const portLogger = {
    debug: (message: string, fields?: Record<string, unknown>) => logger.debug(fields ?? {}, message),
    warn: (message: string, fields?: Record<string, unknown>) => logger.warn(fields ?? {}, message),
    error: (message: string, fields?: Record<string, unknown>) => logger.error(fields ?? {}, message),
  };
  const runtime = createEntityRuntime({
    journal: killAfterCommit(journal, config.testHooks?.killAfterCommitOf, (message) => logger.warn(message)),
    snapshots,
    handler: writeSide,
    snapshotPolicy: { enabled: config.snapshots.enabled, frequency: config.snapshots.frequency },
    logicalDeletion: config.journal.logicalDeletion,
    ...(validation.enabled
      ? { allowedStateTypes: validation.stateTypes, allowedEventTypes: validation.eventTypes }
      : {}),
    commandTimeoutMs: config.timeouts.commandMs,
    passivateAfterMs: config.entities.passivateAfterMs,
    maxActive: config.entities.maxActive,
    cacheMaxBytes: config.entities.cacheMaxBytes,
    mailboxSize: config.entities.mailboxSize,
    maxInFlight: config.entities.maxInFlightCommands,
    maxMessageBytes: config.server.maxMessageBytes,
    // every configured read side, enabled or not: a cos-readside process may deliver to it
    readSideIds: config.readSide.readSides.map((readSide) => readSide.readSideId),
    onRefused: (reason) => metrics.observeRefusal(reason),
    idempotencyRetentionMs: config.journal.idempotencyRetentionMs,
    onIdempotency: (event, count) => metrics.observeIdempotency(event, count),
    ...(clustered
      ? { retain: (entityId: string) => router?.retains(entityId) ?? false, fenceOf: (entityId: string) => router?.fenceOf(entityId) }
      : {}),
    logger: portLogger,
  });
  undo.push('entity runtime', () => runtime.close());
  const peers = clustered
    ? createPeerClients({
        self: address,
        timeoutMs: config.timeouts.commandMs,
        maxMessageBytes: config.server.maxMessageBytes,
        fastTransport: config.server.clientFastTransport,
        ...(peerTls ? { useTls: true, ...peerTls } : {}),
        // COS_GRPC_KEEPALIVE_*: the peers' connections are outbound gRPC connections too
        ...(config.keepalive.enabled ? { keepalive: keepaliveOf(config.keepalive)! } : {}),
      })
    : undefined;
  undo.push('peer clients', () => peers?.close());
  // the leases renew on connections of their own: load on the store's pool must not make this
  // replica miss a renewal and drop its shards
  const leaseDatabase = clustered
    ? await openSidePool({
        store: config.store,
        applicationName: config.telemetry.serviceName,
        purpose: 'leases',
        onStatus: logDatabaseStatus(logger, 'leases'),
      })
    : undefined;
  undo.push('lease pool', () => leaseDatabase?.close());
  storeAvailable = () => database.available() && (leaseDatabase?.available() ?? true);
  const coordinator = clustered
    ? createLeaseCoordinator({
        database: leaseDatabase ?? database,
        address,
        onError: (error) => logger.warn({ err: error }, 'entity shard leases: round failed'),
      })
    : undefined;
  if (peers && coordinator) {
    // COS_CLUSTER_SECRET, else the one the replicas share through the database
    const secret = config.cluster.secret ?? (await loadClusterSecret(database));
    router = createEntityRouter({
      local: runtime,
      peers,
      owners: coordinator,
      fences: journal,
      auth: createForwardingAuth({ secret, maxSkewMs: config.cluster.maxClockSkewMs }),
      address,
      numShards: config.numShards,
      onRoute: (method, outcome) => metrics.observeRoute(method, outcome),
      logger: portLogger,
    });
    undo.push('entity shard leases', () => coordinator.close());
    await coordinator.start(entityShardStreams(config.numShards), router);
    logger.info({ address, shardsOwned: router.ownedShards(), shards: config.numShards }, 'joined the entity shard leases');
  }
  // COS_READ_SIDE_ENABLED: the read sides run here too, sharing the streams with any cos-readside.
  const readSides = readSideEngineOn
    ? await startReadSides({
        config,
        logger,
        journalDatabase: database,
        ...(leaseDatabase ? { leaseDatabase } : {}),
        journal,
        handlerInterceptors: [metrics.handlerInterceptor],
        onDelivery: (readSideId, seconds, outcome) => metrics.observeReadSideDelivery(readSideId, seconds, outcome),
        typeRegistry: registry,
      })
    : undefined;
  undo.push('read sides', () => readSides?.close());
  readSideManager.set(readSides?.manager);
  const hub = config.subscriptions.enabled
    ? createSubscriptionHub({
        journal,
        listen: (channel, listener) => database.listen(channel, listener),
        notify: (channel, payload) => notify(database.kysely, channel, payload),
        journalChannel: JOURNAL_NOTIFY_CHANNEL,
        maxActive: config.subscriptions.maxActive,
        onEvent: (kind, source, lagSeconds) => metrics.observeSubscriptionEvent(kind, source, lagSeconds),
        logger: portLogger,
      })
    : undefined;
  await hub?.start();
  undo.push('subscriptions', () => hub?.close());
  metrics.setSources({
    ...(readSides ? { readSides: () => readSides.samples() } : {}),
    entities: () => runtime.stats(),
    ...(router ? { entityShards: () => router.ownedShards() } : {}),
    ...(hub ? { subscriptions: () => hub.stats() } : {}),
    breakers: () => [
      ...(writeBreaker ? [{ handler: 'write_side', ...writeBreaker.stats() }] : []),
      ...(readSides?.breakers().map((b) => ({ ...b, handler: `read_side:${b.readSideId}` })) ?? []),
    ],
    pools: () => {
      const stats = database.poolStats();
      const leases = leaseDatabase?.poolStats();
      return [...(stats ? [{ pool: 'store', ...stats }] : []), ...(leases ? [{ pool: 'leases', ...leases }] : [])];
    },
  });
  let closing: Promise<void> | undefined;
  const serve = () => {
    if (closing) return;
    ready = router ?? runtime;
    subscriptions = hub;
    health.setAll(ServingStatus.SERVING);
    logger.info(
      {
        writeSide: `${config.writeSide.protocol}://${config.writeSide.host}:${config.writeSide.port}`,
        shards: config.numShards,
        ...(config.writeSide.poolSize > 1 ? { writeSideConnections: config.writeSide.poolSize } : {}),
        ...(writeBreaker ? { writeSideBreaker: config.writeSide.breaker } : {}),
      },
      'chief-of-state serving',
    );
  };
  // Started, but serving only once the configured replicas have joined; a stop meanwhile
  // ends the wait (the process must stay stoppable while it waits).
  if (coordinator && config.cluster.replicaCount > 1) {
    void replicasLive(coordinator, config.cluster.replicaCount, logger, () => closing !== undefined).then(serve);
  } else {
    serve();
  }

  return {
    port: server?.port ?? 0,
    httpPort: httpFrontEnd?.port,
    metricsPort: metricsServer.port,
    metrics,
    health,
    close(graceMs = 10_000) {
      closing ??= (async () => {
        health.setAll(ServingStatus.NOT_SERVING);
        // Order matters. The entity shards go first: the other replicas take them over (and
        // stop forwarding here) while this one still answers the calls already on their way.
        // Then no new calls, while the calls in flight finish (the server resolves once they
        // have, or after graceMs); only then does the runtime refuse commands, and the
        // commands still queued finish and their appends commit; then the pools close.
        await coordinator?.close();
        // open streams end now (UNAVAILABLE, with where to resume), so they do not hold the grace period
        subscriptions = undefined;
        await hub?.close();
        await Promise.all([server?.close(graceMs), httpFrontEnd?.close(graceMs)]);
        await runtime.close();
        ready = undefined;
        readSideManager.set(undefined);
        await readSides?.close();
        await keyExpiry.close();
        await journal.close();
        await writeSide.close();
        await peers?.close();
        writeSideTls?.tls.close();
        peerTls?.tls.close();
        await leaseDatabase?.close();
        await database.close();
        await metricsServer.close();
        logger.info('chief-of-state stopped');
      })();
      return closing;
    },
  };
}

/**
 * The host other replicas reach this one at: POD_IP (Kubernetes' downward API) or else this
 * machine's first non-loopback IPv4 address (a container's own, under docker compose).
 */
function advertisedHost(podIp: string | undefined): string {
  if (podIp !== undefined) return podIp.includes(':') ? `[${podIp}]` : podIp;
  for (const addresses of Object.values(networkInterfaces())) {
    for (const candidate of addresses ?? []) if (candidate.family === 'IPv4' && !candidate.internal) return candidate.address;
  }
  return '127.0.0.1';
}

/**
 * COS_DOCKER_REPLICA_COUNT / COS_KUBERNETES_REPLICA_COUNT: serve only once that many replicas
 * have joined, so a cluster starting together takes traffic once its shards are split between
 * the replicas, rather than the first one up handling everything until the others arrive.
 */
async function replicasLive(
  coordinator: { members(): number },
  count: number,
  logger: Logger,
  stopped: () => boolean,
): Promise<void> {
  let lastLog = 0;
  while (coordinator.members() < count && !stopped()) {
    if (Date.now() - lastLog >= 10_000) {
      lastLog = Date.now();
      logger.info({ live: coordinator.members(), expected: count }, 'waiting for the other replicas before serving');
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

import { networkInterfaces } from 'node:os';
import { logDatabaseStatus, openCosStore, startReadSides } from '@chiefofstate/composition';
import type { CosConfig } from '@chiefofstate/config';
import { ServingStatus, type HealthStatus } from '@chiefofstate/grpc-api';
import { watchClientTlsLogged } from '@chiefofstate/handler-client';
import type { Logger } from '@chiefofstate/logging';
import type { CosMetrics } from '@chiefofstate/metrics';
import { notify, type Database } from '@chiefofstate/postgres';
import { JOURNAL_NOTIFY_CHANNEL } from '@chiefofstate/journal';
import { createSubscriptionHub, type SubscriptionHub } from '@chiefofstate/subscriptions';
import { ConfigError } from '@chiefofstate/core';
import { joinCluster, noCluster, type Cluster } from './cluster.js';
import { startEdge, type Edge } from './edge.js';
import { composeEntities, type Entities } from './entities.js';
import { createStartUpUndo, type StartUpUndo } from './start-up-undo.js';

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
  const edge = await startEdge(config, logger, undo);
  const { gate, metrics, server } = edge;

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
  const cluster = noCluster();
  const address = `${advertisedHost(config.cluster.podIp)}:${server?.port ?? 0}`;
  const entities = composeEntities({ config, logger, undo, database, metrics, writeSideTls, clustered, router: () => cluster.router });
  const { journal, writeBreaker, runtime } = entities;
  if (writeBreaker) gate.writeBreakerOpen = () => writeBreaker.state() === 'open';
  await joinCluster(cluster, { config, logger, undo, clustered, database, journal, runtime, metrics, address, peerTls });
  const { leaseDatabase } = cluster;
  gate.storeAvailable = () => database.available() && (leaseDatabase?.available() ?? true);
  // COS_READ_SIDE_ENABLED: the read sides run here too, sharing the streams with any cos-readside.
  const readSides = edge.readSideEngineOn
    ? await startReadSides({
        config,
        logger,
        journalDatabase: database,
        ...(leaseDatabase ? { leaseDatabase } : {}),
        journal,
        handlerInterceptors: [metrics.handlerInterceptor],
        onDelivery: (readSideId, seconds, outcome) => metrics.observeReadSideDelivery(readSideId, seconds, outcome),
        typeRegistry: edge.registry,
      })
    : undefined;
  undo.push('read sides', () => readSides?.close());
  edge.readSideManager.set(readSides?.manager);
  const hub = config.subscriptions.enabled
    ? createSubscriptionHub({
        journal,
        listen: (channel, listener) => database.listen(channel, listener),
        notify: (channel, payload) => notify(database.kysely, channel, payload),
        journalChannel: JOURNAL_NOTIFY_CHANNEL,
        maxActive: config.subscriptions.maxActive,
        onEvent: (kind, source, lagSeconds) => metrics.observeSubscriptionEvent(kind, source, lagSeconds),
        logger,
      })
    : undefined;
  await hub?.start();
  undo.push('subscriptions', () => hub?.close());
  const parts: Parts = { config, logger, writeSideTls, peerTls, edge, database, entities, cluster, readSides, hub };
  setMetricSources(metrics, parts);
  return running(parts);
}

type ReadSides = Awaited<ReturnType<typeof startReadSides>>;
type WatchedTls = ReturnType<typeof watchClientTlsLogged>;

/** What a started COS is made of, for its metrics, its serving and its close. */
interface Parts {
  readonly config: CosConfig;
  readonly logger: Logger;
  readonly writeSideTls: WatchedTls | undefined;
  readonly peerTls: WatchedTls | undefined;
  readonly edge: Edge;
  readonly database: Database;
  readonly entities: Entities;
  readonly cluster: Cluster;
  readonly readSides: ReadSides | undefined;
  readonly hub: SubscriptionHub | undefined;
}

function setMetricSources(metrics: CosMetrics, parts: Parts): void {
  const { database, readSides, hub } = parts;
  const { runtime, writeBreaker } = parts.entities;
  const { router, leaseDatabase } = parts.cluster;
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
}

/** Serves once ready (see replicasLive), and closes in order. */
function running(parts: Parts): RunningCosServer {
  const { config, logger, edge, hub } = parts;
  const { gate, health, server, httpFrontEnd, metricsServer } = edge;
  const { runtime, writeBreaker } = parts.entities;
  const { coordinator, router } = parts.cluster;
  let closing: Promise<void> | undefined;
  const serve = () => {
    if (closing) return;
    gate.processor = router ?? runtime;
    gate.subscriptions = hub;
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
    metrics: edge.metrics,
    health,
    close(graceMs = 10_000) {
      closing ??= closeInOrder(parts, graceMs);
      return closing;
    },
  };
}

async function closeInOrder(parts: Parts, graceMs: number): Promise<void> {
  const { logger, edge, database, readSides, hub } = parts;
  const { gate, server, httpFrontEnd } = edge;
  const { runtime, keyExpiry, journal, writeSide } = parts.entities;
  const { coordinator, peers, leaseDatabase } = parts.cluster;
  edge.health.setAll(ServingStatus.NOT_SERVING);
  // Order matters. The entity shards go first: the other replicas take them over (and
  // stop forwarding here) while this one still answers the calls already on their way.
  // Then no new calls, while the calls in flight finish (the server resolves once they
  // have, or after graceMs); only then does the runtime refuse commands, and the
  // commands still queued finish and their appends commit; then the pools close.
  await coordinator?.close();
  // open streams end now (UNAVAILABLE, with where to resume), so they do not hold the grace period
  gate.subscriptions = undefined;
  await hub?.close();
  await Promise.all([server?.close(graceMs), httpFrontEnd?.close(graceMs)]);
  await runtime.close();
  gate.processor = undefined;
  edge.readSideManager.set(undefined);
  await readSides?.close();
  await keyExpiry.close();
  await journal.close();
  await writeSide.close();
  await peers?.close();
  parts.writeSideTls?.tls.close();
  parts.peerTls?.tls.close();
  await leaseDatabase?.close();
  await database.close();
  await edge.metricsServer.close();
  logger.info('chief-of-state stopped');
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

import { logDatabaseStatus, openCosStore, openSidePool, startReadSides, type RunningReadSides } from '@chiefofstate/composition';
import { readTypeRegistry, type CosConfig } from '@chiefofstate/config';
import { ConfigError } from '@chiefofstate/core';
import {
  createHealthStatus,
  createServerTracingInterceptor,
  createReadSideManagerService,
  listenerSecurityOptions,
  logCallFailure,
  ServingStatus,
  startGrpcServer,
  type GrpcServer,
  type HealthStatus,
} from '@chiefofstate/grpc-api';
import type { Logger } from '@chiefofstate/logging';
import { createMetrics, startMetricsServer, type CosMetrics, type MetricsServer } from '@chiefofstate/metrics';
import type { Database } from '@chiefofstate/postgres';
import { Health, ReadSideManagerService } from '@chiefofstate/protocol';
import { createDeferredManager } from '@chiefofstate/read-side';

export interface CosReadsideOptions {
  readonly config: CosConfig;
  readonly logger: Logger;
}

export interface RunningCosReadside {
  /** the bound gRPC port (COS_PORT, or the one picked for port 0) */
  readonly port: number;
  /** the operations HTTP port: /metrics, /healthz, /readyz (COS_METRICS_PORT) */
  readonly metricsPort: number;
  readonly metrics: CosMetrics;
  readonly health: HealthStatus;
  readonly readSides: RunningReadSides;
  /** Stops serving, stops the streams (each finishes its event and commits), closes the pools. */
  close(graceMs?: number): Promise<void>;
}

/**
 * The read sides in a process of their own: the journal's database (migrated with the same
 * migration set as cos-server's, so either may start first), the read-side engine and its
 * leases, ReadSideManagerService and grpc.health.v1 on COS_PORT, and the operations port.
 * Several cos-readside (and cos-server) processes on one database split the streams.
 */
export async function startCosReadside(options: CosReadsideOptions): Promise<RunningCosReadside> {
  const { config, logger } = options;
  if (!config.readSide.enabled && !config.publishers.some((publisher) => publisher.enabled)) {
    throw new ConfigError([
      'COS_READ_SIDE_ENABLED=false and no publisher is configured: cos-readside only runs read sides and publishers; unset it, set it to true or configure COS_PUBLISHER_CONFIG',
    ]);
  }
  const health = createHealthStatus({ services: [ReadSideManagerService.typeName] });
  const metrics = createMetrics();

  let running: RunningReadSides | undefined;
  const deferred = createDeferredManager();
  const server: GrpcServer = await startGrpcServer({
    host: config.server.address,
    port: config.server.port,
    maxMessageBytes: config.server.maxMessageBytes,
    maxConcurrentStreams: config.server.maxConcurrentStreams,
    maxHeaderBytes: config.server.maxHeaderBytes,
    receiveTimeoutMs: config.server.receiveTimeoutMs,
    idleTimeoutMs: config.server.idleTimeoutMs,
    unaryFastPath: config.server.unaryFastPath,
    logger,
    // COS_TLS_*, COS_ADMIN_* (ReadSideManagerService); this process takes no forwarded calls
    ...listenerSecurityOptions(config.security, false),
    interceptors: [createServerTracingInterceptor({ ignoreServices: [Health.typeName] }), metrics.serverInterceptor],
    routes: (router) => {
      router.service(
        ReadSideManagerService,
        createReadSideManagerService({
          manager: deferred.manager,
          onError: logCallFailure(logger),
        }),
      );
      router.service(Health, health.service);
    },
  });
  logger.info({ address: config.server.address, port: server.port }, 'gRPC server listening');

  let metricsServer: MetricsServer | undefined;
  let database: Database | undefined;
  let leaseDatabase: Database | undefined;
  try {
    metricsServer = await startMetricsServer({
      host: config.telemetry.metricsAddress,
      port: config.telemetry.metricsPort,
      tokenFile: config.security.metricsTokenFile,
      reloadIntervalMs: config.security.reloadIntervalMs,
      onReloadError: (error) => logger.warn({ err: error }, 'changed metrics token file cannot be used; the previous tokens stay in use'),
      metrics,
      // not ready while the store is known unreachable
      ready: () => running !== undefined && (database?.available() ?? false) && (leaseDatabase?.available() ?? true),
    });
    database = await openCosStore({
      store: config.store,
      applicationName: config.telemetry.serviceName,
      onStatus: logDatabaseStatus(logger, 'store'),
    });
    logger.info({ store: config.store.kind, schema: config.store.schema }, 'store migrated');
    // the stream leases renew on connections of their own, whatever the deliveries' load
    leaseDatabase = await openSidePool({
      store: config.store,
      applicationName: config.telemetry.serviceName,
      purpose: 'leases',
      onStatus: logDatabaseStatus(logger, 'leases'),
    });
    running = await startReadSides({
      config,
      logger,
      journalDatabase: database,
      ...(leaseDatabase ? { leaseDatabase } : {}),
      handlerInterceptors: [metrics.handlerInterceptor],
      onDelivery: (readSideId, seconds, outcome) => metrics.observeReadSideDelivery(readSideId, seconds, outcome),
      // publishers with the JSON payload format render the user's types (COS_PROTO_DESCRIPTOR_SET)
      typeRegistry: readTypeRegistry(config.frontEnds.descriptorSetFiles),
    });
  } catch (error) {
    await server.close(0);
    await metricsServer?.close();
    await leaseDatabase?.close();
    await database?.close();
    throw error;
  }
  const readSides = running;
  deferred.set(readSides.manager);
  const store = database;
  const leases = leaseDatabase;
  metrics.setSources({
    readSides: () => readSides.samples(),
    breakers: () => readSides.breakers().map((b) => ({ ...b, handler: `read_side:${b.readSideId}` })),
    pools: () => {
      const stats = store.poolStats();
      const leaseStats = leases?.poolStats();
      return [...(stats ? [{ pool: 'store', ...stats }] : []), ...(leaseStats ? [{ pool: 'leases', ...leaseStats }] : [])];
    },
  });
  health.setAll(ServingStatus.SERVING);
  logger.info(
    { readSides: readSides.engine.readSideIds, shards: config.numShards, metricsPort: metricsServer.port },
    'cos-readside serving',
  );

  const operations = metricsServer;
  let closing: Promise<void> | undefined;
  return {
    port: server.port,
    metricsPort: operations.port,
    metrics,
    health,
    readSides,
    close(graceMs = 10_000) {
      closing ??= (async () => {
        health.setAll(ServingStatus.NOT_SERVING);
        const serverClosed = server.close(graceMs);
        // each stream finishes the event in hand and commits; the leases are given up
        deferred.set(undefined);
        await readSides.close();
        running = undefined;
        await serverClosed;
        await leases?.close();
        await store.close();
        await operations.close();
        logger.info('cos-readside stopped');
      })();
      return closing;
    },
  };
}

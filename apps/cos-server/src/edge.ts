import type { FileRegistry } from '@bufbuild/protobuf';
import { readTypeRegistry, type CosConfig } from '@chiefofstate/config';
import {
  createChiefOfStateService,
  createHealthStatus,
  createReadSideManagerService,
  createServerTracingInterceptor,
  listenerSecurityOptions,
  logCallFailure,
  registerReflection,
  startGrpcServer,
  startHttpFrontEnd,
  type CommandProcessor,
  type GrpcServer,
  type HealthStatus,
  type HttpFrontEnd,
} from '@chiefofstate/grpc-api';
import { createReachabilityProbe } from '@chiefofstate/handler-client';
import type { Logger } from '@chiefofstate/logging';
import { createMetrics, startMetricsServer, type CosMetrics, type MetricsServer } from '@chiefofstate/metrics';
import { ChiefOfStateService, Health, ReadSideManagerService, ReflectionV1, ReflectionV1alpha } from '@chiefofstate/protocol';
import { createDeferredManager } from '@chiefofstate/read-side';
import type { SubscriptionHub } from '@chiefofstate/subscriptions';
import { ShuttingDownError } from '@chiefofstate/core';
import type { StartUpUndo } from './start-up-undo.js';

/**
 * What the edge serves once the rest is up: set as start-up goes on. Until `processor` (and
 * `subscriptions`) are set, calls are refused with ShuttingDownError and /readyz says not ready.
 */
export interface EdgeGate {
  processor: CommandProcessor | undefined;
  /** COS_SUBSCRIPTION_ENABLED: built once the store is open */
  subscriptions: SubscriptionHub | undefined;
  /** not ready while the store (or the leases' connections) is known unreachable */
  storeAvailable: () => boolean;
  /** nor while the write handler's circuit breaker is open (COS_WRITE_SIDE_BREAKER_ENABLED) */
  writeBreakerOpen: () => boolean;
}

/** The listening edge: the gRPC server, the HTTP/JSON front end and the operations server. */
export interface Edge {
  readonly gate: EdgeGate;
  readonly health: HealthStatus;
  readonly metrics: CosMetrics;
  /** the read-side manager the ReadSideManagerService serves, set once the read sides run */
  readonly readSideManager: ReturnType<typeof createDeferredManager>;
  /** COS_PROTO_DESCRIPTOR_SET: the user's types, for JSON and reflection */
  readonly registry: FileRegistry;
  /** publishers run on the read-side engine: managed by ReadSideManagerService like read sides */
  readonly readSideEngineOn: boolean;
  readonly server: GrpcServer | undefined;
  readonly httpFrontEnd: HttpFrontEnd | undefined;
  readonly metricsServer: MetricsServer;
}

/**
 * Opens the ports first, so health probes get NOT_SERVING while the store migrates: gRPC
 * (COS_SERVER_PROTOCOL, or for the peers when clustered), HTTP/JSON (COS_HTTP_PORT) and
 * /metrics, /healthz, /readyz. Each is registered with `undo` as it opens.
 */
export async function startEdge(config: CosConfig, logger: Logger, undo: StartUpUndo): Promise<Edge> {
  const gate: EdgeGate = {
    processor: undefined,
    subscriptions: undefined,
    storeAvailable: () => true,
    writeBreakerOpen: () => false,
  };
  // publishers run on the read-side engine: managed by ReadSideManagerService like read sides
  const readSideEngineOn = config.readSide.enabled || config.publishers.some((publisher) => publisher.enabled);
  const health = createHealthStatus({
    services: [ChiefOfStateService.typeName, ...(readSideEngineOn ? [ReadSideManagerService.typeName] : [])],
  });
  const readSideManager = createDeferredManager();
  const metrics = createMetrics();
  const handlerReachable = createReachabilityProbe({ host: config.writeSide.host, port: config.writeSide.port });
  const cosService = chiefOfStateService(config, logger, gate);
  // COS_PROTO_DESCRIPTOR_SET: the user's types, for JSON and reflection (checked when the config loaded)
  const registry = readTypeRegistry(config.frontEnds.descriptorSetFiles);
  const edge = edgeOptions(config, logger, metrics, registry);
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
  const metricsServer: MetricsServer = await startMetricsServer({
    host: config.telemetry.metricsAddress,
    port: config.telemetry.metricsPort,
    tokenFile: config.security.metricsTokenFile,
    reloadIntervalMs: config.security.reloadIntervalMs,
    onReloadError: (error) => logger.warn({ err: error }, 'changed metrics token file cannot be used; the previous tokens stay in use'),
    metrics,
    ready: async () => {
      if (gate.writeBreakerOpen()) return { ready: false, reason: 'write handler circuit breaker open' };
      return gate.processor !== undefined && gate.storeAvailable() && (await handlerReachable());
    },
  });
  undo.push('metrics server', () => metricsServer.close());
  return { gate, health, metrics, readSideManager, registry, readSideEngineOn, server, httpFrontEnd, metricsServer };
}

/** The ChiefOfStateService, answering through the gate (refusing while starting or stopping). */
function chiefOfStateService(config: CosConfig, logger: Logger, gate: EdgeGate) {
  const notReady = () => {
    throw new ShuttingDownError('chief-of-state is starting or stopping');
  };
  return createChiefOfStateService({
    processor: {
      processCommand: (request) => (gate.processor ? gate.processor.processCommand(request) : notReady()),
      getState: (entityId, call) => (gate.processor ? gate.processor.getState(entityId, call) : notReady()),
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
            subscribe: (request) => (gate.subscriptions ? gate.subscriptions.subscribe(request) : notReady()),
            subscribeAll: (request) => (gate.subscriptions ? gate.subscriptions.subscribeAll(request) : notReady()),
            unsubscribe: (id) => (gate.subscriptions ? gate.subscriptions.unsubscribe(id) : notReady()),
          },
        }
      : {}),
  });
}

/** What both front ends share: limits, interceptors, TLS and caller authentication, types, CORS. */
function edgeOptions(config: CosConfig, logger: Logger, metrics: CosMetrics, registry: FileRegistry) {
  return {
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
}

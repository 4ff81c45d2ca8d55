import { createEntityRouter, createForwardingAuth, entityShardStreams, type EntityRouter } from '@chiefofstate/cluster';
import type { CosConfig } from '@chiefofstate/config';
import type { EntityRuntime } from '@chiefofstate/entity';
import { createPeerClients, keepaliveOf, type watchClientTlsLogged } from '@chiefofstate/handler-client';
import type { createJournal } from '@chiefofstate/journal';
import type { Logger } from '@chiefofstate/logging';
import type { CosMetrics } from '@chiefofstate/metrics';
import type { Database } from '@chiefofstate/postgres';
import { createLeaseCoordinator, loadClusterSecret } from '@chiefofstate/leases';
import { openSidePool, logDatabaseStatus } from '@chiefofstate/composition';
import type { StartUpUndo } from './start-up-undo.js';

/**
 * This replica's part in the cluster: on PostgreSQL the replicas sharing the database split the
 * entity shards between them (leases) and forward calls for the others' shards to their owner.
 * All undefined on the embedded store, whose one process handles everything. Filled in by
 * joinCluster; the entity runtime asks `router` which entities it keeps.
 */
export interface Cluster {
  peers: ReturnType<typeof createPeerClients> | undefined;
  /** the leases' own connections */
  leaseDatabase: Database | undefined;
  coordinator: ReturnType<typeof createLeaseCoordinator> | undefined;
  router: EntityRouter | undefined;
}

export interface JoinClusterOptions {
  readonly config: CosConfig;
  readonly logger: Logger;
  readonly undo: StartUpUndo;
  readonly clustered: boolean;
  readonly database: Database;
  readonly journal: ReturnType<typeof createJournal>;
  readonly runtime: EntityRuntime;
  readonly metrics: CosMetrics;
  /** where the other replicas reach this one */
  readonly address: string;
  /** COS_CLUSTER_TLS_*, watched: peers over TLS when this replica serves TLS */
  readonly peerTls: ReturnType<typeof watchClientTlsLogged> | undefined;
}

export function noCluster(): Cluster {
  return { peers: undefined, leaseDatabase: undefined, coordinator: undefined, router: undefined };
}

/**
 * Opens the peer clients and the lease pool, and joins the entity shard leases with a router
 * over the local runtime and the peers (when clustered). Each is registered with `undo`.
 */
export async function joinCluster(cluster: Cluster, options: JoinClusterOptions): Promise<void> {
  const { config, logger, undo, clustered, database, address, peerTls } = options;
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
  cluster.peers = peers;
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
  cluster.leaseDatabase = leaseDatabase;
  undo.push('lease pool', () => leaseDatabase?.close());
  const coordinator = clustered
    ? createLeaseCoordinator({
        database: leaseDatabase ?? database,
        address,
        fastTakeover: config.cluster.fastTakeover,
        onError: (error) => logger.warn({ err: error }, 'entity shard leases: round failed'),
        onTakeover: (ownerId) => logger.warn({ owner: ownerId }, "entity shard leases: a replica's database session ended (killed or crashed); its shards are taken over now"),
      })
    : undefined;
  cluster.coordinator = coordinator;
  if (peers && coordinator) {
    // COS_CLUSTER_SECRET, else the one the replicas share through the database
    const secret = config.cluster.secret ?? (await loadClusterSecret(database));
    const router = createEntityRouter({
      local: options.runtime,
      peers,
      owners: coordinator,
      fences: options.journal,
      auth: createForwardingAuth({ secret, maxSkewMs: config.cluster.maxClockSkewMs }),
      address,
      numShards: config.numShards,
      onRoute: (method, outcome) => options.metrics.observeRoute(method, outcome),
      logger: options.logger,
    });
    cluster.router = router;
    undo.push('entity shard leases', () => coordinator.close());
    await coordinator.start(entityShardStreams(config.numShards), router);
    logger.info({ address, shardsOwned: router.ownedShards(), shards: config.numShards }, 'joined the entity shard leases');
  }
}

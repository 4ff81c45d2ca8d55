import type { Registry } from '@bufbuild/protobuf';
import type { CosConfig, StoreConfig } from '@chiefofstate/config';
import { createCircuitBreaker, type BreakerStats, type CircuitBreaker } from '@chiefofstate/circuit-breaker';
import {
  createReadSideClient,
  keepaliveOf,
  watchClientTlsLogged,
  type ClientTls,
  type HandlerClientOptions,
  type ReadSideClient,
} from '@chiefofstate/handler-client';
import { createJournal, JOURNAL_NOTIFY_CHANNEL } from '@chiefofstate/journal';
import { createPublisherHandler, createSink, PUBLISHER_RETRY, type PublisherHandler, redactUrl } from '@chiefofstate/publisher';
import { createOffsetStore, offsetStoreMigrations } from '@chiefofstate/offset-store';
import type { Logger } from '@chiefofstate/core';
import { createDatabase, mergeMigrations, migrateToLatest, notify, type Database, type MigrationSet } from '@chiefofstate/postgres';
import { createLeaseCoordinator, leaseMigrations } from '@chiefofstate/leases';
import {
  createReadSideEngine,
  createReadSideManager,
  type DeliveryOutcome,
  type JournalReader,
  type ReadSideEngine,
  type ReadSideManager,
  type RetryOptions,
} from '@chiefofstate/read-side';

/**
 * The tables of the read sides (offsets and stream leases), in the database that holds the
 * offsets. When that is the journal's database, include them in its migration set, which must
 * be the same for every process using that database (Kysely refuses a database that ran
 * migrations its set does not know): journal + snapshots + these.
 */
export const readSideMigrations: MigrationSet = mergeMigrations(offsetStoreMigrations, leaseMigrations);

export interface StartReadSidesOptions {
  readonly config: Pick<CosConfig, 'readSide' | 'numShards' | 'store' | 'readSideOffsetStore' | 'server' | 'telemetry'> &
    Partial<Pick<CosConfig, 'publishers' | 'keepalive' | 'cluster'>>;
  readonly logger: Logger;
  /** the journal's database, opened and migrated by the caller (with readSideMigrations) */
  readonly journalDatabase: Database;
  /**
   * a small pool of its own on the offsets' database for the stream leases, so that load on the
   * other pools cannot delay a renewal past the lease (default: the offsets' database)
   */
  readonly leaseDatabase?: Database;
  /** the caller's journal, if it has one; otherwise one is created to read from */
  readonly journal?: JournalReader & { latestPosition(shard?: number): Promise<bigint> };
  /** Connect interceptors around every HandleReadSide call (tracing, metrics) */
  readonly handlerInterceptors?: HandlerClientOptions['interceptors'];
  /** each delivery attempt's duration and outcome (metrics) */
  readonly onDelivery?: (readSideId: string, seconds: number, outcome: DeliveryOutcome) => void;
  /** lease duration (takeover time after a crash), default 5000 ms */
  readonly leaseMs?: number;
  readonly pollIntervalMs?: number;
  readonly retry?: Partial<RetryOptions>;
  /** the types publishers with the JSON payload format render Anys with (COS_PROTO_DESCRIPTOR_SET) */
  readonly typeRegistry?: Registry;
}

/** One (read side, shard) for metrics: how far behind it is, and its state. */
export interface ReadSideSample {
  readonly readSideId: string;
  readonly shard: number;
  /** journal positions between the shard's newest event and the committed offset */
  readonly lag: number;
  /** stopped by the failure policy (known for the streams this process runs) */
  readonly stopped: boolean;
  readonly paused: boolean;
}

export interface RunningReadSides {
  readonly engine: ReadSideEngine;
  /** for ReadSideManagerService (createReadSideManagerService in @chiefofstate/grpc-api) */
  readonly manager: ReadSideManager;
  /** every (read side, shard), from the database: lag, paused; stopped as this process knows it */
  samples(): Promise<ReadSideSample[]>;
  /** the circuit breaker of each read side (COS_READ_SIDE_BREAKER_*), empty when off */
  breakers(): Array<{ readonly readSideId: string } & BreakerStats>;
  /** Stops the streams (each finishes its event and commits), gives up leases, closes what it opened. */
  close(): Promise<void>;
}

/**
 * Composes the read sides from the configuration: one client per enabled read side (gRPC or
 * HTTP, behind its circuit breaker when COS_READ_SIDE_BREAKER_ENABLED), the
 * offset store (in the journal's database, or the separate one of COS_READ_SIDE_OFFSET_DB_*,
 * opened and migrated here), the lease coordinator in the offsets' database, the engine woken by
 * the journal's NOTIFY, and the manager. Used by cos-readside and by cos-server when
 * COS_READ_SIDE_ENABLED=true.
 */
export async function startReadSides(options: StartReadSidesOptions): Promise<RunningReadSides> {
  const { config, journalDatabase, logger } = options;
  // read sides only when COS_READ_SIDE_ENABLED; publishers (COS_PUBLISHER_CONFIG) whenever configured
  const sides = config.readSide.enabled ? config.readSide.readSides.filter((side) => side.enabled) : [];
  const publishers = (config.publishers ?? []).filter((publisher) => publisher.enabled);

  const separate = !sameStore(config.readSideOffsetStore, config.store);
  let offsetsDatabase = journalDatabase;
  if (separate) {
    const store = config.readSideOffsetStore;
    offsetsDatabase = await createDatabase(store.kind === 'postgres' ? { ...store, applicationName: config.telemetry.serviceName } : store);
    try {
      await migrateToLatest({ database: offsetsDatabase, migrations: readSideMigrations });
    } catch (error) {
      await offsetsDatabase.close();
      throw error;
    }
  }

  const clients: ReadSideClient[] = [];
  const tlsFiles: ClientTls[] = [];
  // each read side's TLS files, read now: a broken one stops the start, before anything runs
  let sideTls: (ReturnType<typeof watchClientTlsLogged> | undefined)[];
  try {
    sideTls = sides.map((side) => {
      if (!side.tls) return undefined;
      const watched = watchClientTlsLogged({
        ...side.tls,
        what: `read side ${side.readSideId}`,
        label: `read side ${JSON.stringify(side.readSideId)} TLS files`,
        logger: options.logger,
      });
      tlsFiles.push(watched.tls);
      return watched;
    });
  } catch (error) {
    for (const files of tlsFiles) files.close();
    if (separate) await offsetsDatabase.close();
    throw error;
  }
  const breakers = new Map<string, CircuitBreaker>();
  const breakerSettings = config.readSide.breaker;
  if (breakerSettings) {
    for (const side of sides) {
      breakers.set(
        side.readSideId,
        createCircuitBreaker({
          name: `read side ${side.readSideId} handler ${side.host}:${side.port}`,
          publicMessage: 'read-side handler unavailable (circuit breaker open)',
          ...breakerSettings,
          // called on the logger: pino's methods need their `this`
          onStateChange: (state, previous) =>
            logger[state === 'open' ? 'warn' : 'info']({ readSideId: side.readSideId, previous }, `read side handler circuit breaker ${state}`),
        }),
      );
    }
  }
  const keepalive = config.keepalive ? keepaliveOf(config.keepalive) : undefined;
  const publisherHandlers: PublisherHandler[] = publishers.map((publisher) =>
    createPublisherHandler(createSink(publisher), {
      format: publisher.format,
      ...(options.typeRegistry ? { registry: options.typeRegistry } : {}),
    }),
  );
  const journal = options.journal ?? createJournal({ database: journalDatabase, numShards: config.numShards });
  const offsets = createOffsetStore({ database: offsetsDatabase });
  const ownership = createLeaseCoordinator({
    database: separate || !options.leaseDatabase ? offsetsDatabase : options.leaseDatabase,
    ...(options.leaseMs !== undefined ? { leaseMs: options.leaseMs } : {}),
    ...(config.cluster ? { fastTakeover: config.cluster.fastTakeover } : {}),
    onError: (error) => logger.warn({ err: error }, 'read side leases: round failed'),
    onTakeover: (ownerId) => logger.warn({ owner: ownerId }, "read side leases: a process's database session ended (killed or crashed); its streams are taken over now"),
  });
  const engine = createReadSideEngine({
    readSides: sides.map((side, index) => {
      const breaker = breakers.get(side.readSideId);
      const client = createReadSideClient({
        host: side.host,
        port: side.port,
        protocol: side.protocol,
        ...(breaker ? { breaker } : {}),
        ...(keepalive ? { keepalive } : {}),
        useTls: side.useTls,
        ...sideTls[index],
        timeoutMs: side.timeoutMs,
        maxMessageBytes: config.server.maxMessageBytes,
        fastTransport: config.server.clientFastTransport,
        ...(options.handlerInterceptors ? { interceptors: options.handlerInterceptors } : {}),
      });
      clients.push(client);
      return {
        readSideId: side.readSideId,
        handler: client,
        timeoutMs: side.timeoutMs,
        failurePolicy: side.failurePolicy,
        autoStart: side.autoStart,
      };
    }).concat(
      // a publisher is a read side whose handler is a broker: same streams, offsets, leases, management
      publishers.map((publisher, index) => ({
        readSideId: publisher.publisherId,
        handler: publisherHandlers[index]!,
        timeoutMs: publisher.timeoutMs,
        failurePolicy: 'REPLAY_STOP' as const,
        autoStart: publisher.autoStart,
        retry: PUBLISHER_RETRY,
      })),
    ),
    numShards: config.numShards,
    journal,
    offsets,
    ownership,
    journalNotifications: { listen: (channel, listener) => journalDatabase.listen(channel, listener), channel: JOURNAL_NOTIFY_CHANNEL },
    controlNotifications: { listen: (channel, listener) => offsetsDatabase.listen(channel, listener) },
    logger,
    ...(options.pollIntervalMs !== undefined ? { pollIntervalMs: options.pollIntervalMs } : {}),
    ...(options.retry !== undefined ? { retry: options.retry } : {}),
    ...(options.onDelivery ? { onDelivery: options.onDelivery } : {}),
  });
  const closeOwned = async () => {
    await Promise.all([...clients, ...publisherHandlers].map((client) => client.close()));
    for (const files of tlsFiles) files.close();
    if (separate) await offsetsDatabase.close();
  };
  try {
    await engine.start();
  } catch (error) {
    await engine.close().catch(() => {});
    await closeOwned();
    throw error;
  }
  const manager = createReadSideManager({
    readSideIds: engine.readSideIds,
    numShards: config.numShards,
    offsets,
    journal,
    engine,
    notify: (channel, payload) => notify(offsetsDatabase.kysely, channel, payload),
    logger,
  });
  logger.info(
    {
      readSides: sides.map(
        (side) => `${side.readSideId}=${side.protocol === 'http' ? 'http ' : ''}${side.host}:${side.port} ${side.failurePolicy}${side.autoStart ? '' : ' paused'}`,
      ),
      publishers: publishers.map((p) => `${p.publisherId}=${p.sink} ${redactUrl(p.url)}${p.sink === 'nats' ? ` ${p.subject}` : ` exchange=${JSON.stringify(p.exchange)}`}${p.autoStart ? '' : ' paused'}`),
      offsets: separate ? 'separate database' : 'journal database',
      owner: ownership.ownerId,
    },
    'read sides running',
  );

  let closing: Promise<void> | undefined;
  const samples = async (): Promise<ReadSideSample[]> => {
    const latest = await Promise.all(Array.from({ length: config.numShards }, (_, shard) => journal.latestPosition(shard)));
    const stopped = new Set(engine.status().filter((s) => s.stopped).map((s) => `${s.readSideId}#${s.shard}`));
    const result: ReadSideSample[] = [];
    for (const readSideId of engine.readSideIds) {
      for (const row of await offsets.list(readSideId, config.numShards)) {
        const lag = (latest[row.shard] ?? 0n) - row.position;
        result.push({
          readSideId,
          shard: row.shard,
          lag: lag > 0n ? Number(lag) : 0,
          stopped: stopped.has(`${readSideId}#${row.shard}`),
          paused: row.paused,
        });
      }
    }
    return result;
  };

  return {
    engine,
    manager,
    samples,
    breakers: () => [...breakers].map(([readSideId, breaker]) => ({ readSideId, ...breaker.stats() })),
    close() {
      closing ??= (async () => {
        await engine.close();
        await closeOwned();
      })();
      return closing;
    },
  };
}

/** The same database: the same object (config's rule), or the same settings. */
function sameStore(a: StoreConfig, b: StoreConfig): boolean {
  if (a === b) return true;
  if (a.kind === 'embedded' && b.kind === 'embedded') return a.dataDir === b.dataDir && a.schema === b.schema;
  if (a.kind === 'postgres' && b.kind === 'postgres') {
    return a.host === b.host && a.port === b.port && a.database === b.database && a.schema === b.schema;
  }
  return false;
}

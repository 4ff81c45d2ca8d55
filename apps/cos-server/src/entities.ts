import type { CircuitBreaker } from '@chiefofstate/circuit-breaker';
import type { EntityRouter } from '@chiefofstate/cluster';
import type { CosConfig } from '@chiefofstate/config';
import { createEntityRuntime, type EntityRuntime } from '@chiefofstate/entity';
import type { watchClientTlsLogged, WriteSideClient } from '@chiefofstate/handler-client';
import { createJournal, startKeyExpiry } from '@chiefofstate/journal';
import type { Logger } from '@chiefofstate/logging';
import type { CosMetrics } from '@chiefofstate/metrics';
import type { Database } from '@chiefofstate/postgres';
import { createSnapshotStore } from '@chiefofstate/snapshot';
import type { StartUpUndo } from './start-up-undo.js';
import { killAfterCommit } from './test-hooks.js';
import { createWriteHandler } from './write-handler.js';

export interface EntitiesOptions {
  readonly config: CosConfig;
  readonly logger: Logger;
  readonly undo: StartUpUndo;
  readonly database: Database;
  readonly metrics: CosMetrics;
  /** COS_WRITE_SIDE_TLS_*, watched */
  readonly writeSideTls: ReturnType<typeof watchClientTlsLogged> | undefined;
  /** On PostgreSQL, the replicas split the entity shards: the router (set later) says which entities stay here */
  readonly clustered: boolean;
  readonly router: () => EntityRouter | undefined;
}

export interface Entities {
  readonly journal: ReturnType<typeof createJournal>;
  readonly keyExpiry: ReturnType<typeof startKeyExpiry>;
  readonly writeSide: WriteSideClient;
  /** COS_WRITE_SIDE_BREAKER_*: undefined when off */
  readonly writeBreaker: CircuitBreaker | undefined;
  readonly runtime: EntityRuntime;
}

/**
 * The write path on the open store: the journal (and its idempotency key expiry), snapshots,
 * the client of the user's write handler and the entity runtime. Each is registered with
 * `undo` as it opens.
 */
export function composeEntities(options: EntitiesOptions): Entities {
  const { config, logger, undo, database, metrics, writeSideTls, clustered, router } = options;
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
  const validation = config.writeSide.validation;
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
      ? { retain: (entityId: string) => router()?.retains(entityId) ?? false, fenceOf: (entityId: string) => router()?.fenceOf(entityId) }
      : {}),
    logger,
  });
  undo.push('entity runtime', () => runtime.close());
  return { journal, keyExpiry, writeSide, writeBreaker, runtime };
}

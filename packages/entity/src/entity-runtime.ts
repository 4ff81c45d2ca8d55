import {
  InvalidArgumentError,
  NotFoundError,
  ShuttingDownError,
  assertValidEntityId,
  type CommandRequest,
  type EntityState,
  type Logger,
} from '@chiefofstate/core';
import { MAX_IDEMPOTENCY_KEY_BYTES } from '@chiefofstate/protocol';
import { isBusy } from './active-entities.js';
import { NO_DEADLINE } from './batch.js';
import { admit, enqueue, slotFor } from './mailbox.js';
import type { Clock, JournalPort, ReadOptions, SnapshotPort, WriteHandlerPort } from './ports.js';
import { readStoredEntity } from './recovery.js';
import type { RefusalReason } from './refusals.js';
import { createRuntimeContext, trimCache, type EntitySlot } from './runtime-context.js';
import type { SnapshotPolicy } from './snapshot-policy.js';

export interface EntityRuntimeOptions {
  journal: JournalPort;
  handler: WriteHandlerPort;
  /** snapshot store; also the fallback for recovery when the journal holds no event */
  snapshots?: SnapshotPort;
  snapshotPolicy?: SnapshotPolicy;
  /** after a snapshot, delete the events before the oldest retained one (COS_JOURNAL_LOGICAL_DELETION) */
  logicalDeletion?: boolean;
  /** allowed state type names (`package.Message`); undefined: no validation */
  allowedStateTypes?: readonly string[];
  /** allowed event type names; undefined: no validation */
  allowedEventTypes?: readonly string[];
  /** most a command may take from arrival, queueing included (COS_COMMAND_HANDLER_TIMEOUT) */
  commandTimeoutMs?: number;
  /** an entity idle this long leaves memory. Default 120 000 */
  passivateAfterMs?: number;
  /** most entities kept in memory; least recently used idle ones go first. Default 100 000 */
  maxActive?: number;
  /** how often idle entities are looked for. Default min(passivateAfterMs, 10 000) */
  sweepIntervalMs?: number;
  /** attempts of a command whose append hits a conflict (another writer). Default 5 */
  maxAttempts?: number;
  /**
   * most queued commands of one entity handled back to back and persisted in one append (their
   * replies wait for it). Default 32; 1 appends every command on its own
   */
  maxCommandsPerAppend?: number;
  /** snapshot saves allowed in flight; beyond, a snapshot is skipped (the next multiple takes one). Default 256 */
  maxPendingSnapshots?: number;
  /** most commands of one entity queued or running; beyond, OverloadedError at once. Default 256 */
  mailboxSize?: number;
  /** most commands queued or running, all entities together; beyond, OverloadedError at once. Default 4096 */
  maxInFlight?: number;
  /**
   * most serialized bytes of state and meta kept in memory, all entities together; beyond, the
   * least recently used idle entities are passivated. Default 256 MiB
   */
  cacheMaxBytes?: number;
  /**
   * largest gRPC message (COS_GRPC_MAX_MESSAGE_BYTES). A command whose new state would not fit
   * in the reply, in the next HandleCommand request, or with one of its events in a read-side
   * delivery fails with MessageTooLargeError before anything is persisted. Default 4 MiB
   */
  maxMessageBytes?: number;
  /** the read sides events are delivered to: the longest id counts in a delivery's size */
  readSideIds?: readonly string[];
  /** told about each command refused for a bound (metrics) */
  onRefused?: (reason: RefusalReason) => void;
  /**
   * Whether an entity's state may stay in memory between commands. Default: always. Several
   * replicas keep only the entities of the shards they own; an entity not retained is loaded
   * from the store for each batch of its commands and dropped when its mailbox empties, so a
   * replica never answers from a copy another replica may have moved on from.
   */
  retain?: (entityId: string) => boolean;
  /**
   * The lease epoch each append of the entity carries (`JournalAppend.fence`), read at append
   * time; undefined: none. Replicas that split the shards pass their lease's epoch.
   */
  fenceOf?: (entityId: string) => bigint | undefined;
  // ---- retry-safe commands ----
  /** how long an idempotency key answers its command's outcome (COS_IDEMPOTENCY_RETENTION), ms. Default 24 h */
  idempotencyRetentionMs?: number;
  /**
   * idempotency keys of one entity known in memory; beyond, a key not found there is looked up
   * in the store (one read per batch of commands). Default 256
   */
  maxKeysPerEntity?: number;
  /**
   * told about idempotency keys (metrics): `replayed`, a command answered with the outcome
   * recorded for its key; `stored`, keys recorded; `reused`, a key refused for a different body
   */
  onIdempotency?: (event: IdempotencyEvent, count: number) => void;
  logger?: Logger;
  clock?: Clock;
}

/** What happened with idempotency keys (see `onIdempotency`). */
export type IdempotencyEvent = 'replayed' | 'stored' | 'reused';

export interface EntityRuntimeStats {
  /** entities in memory */
  active: number;
  /** entities passivated since start */
  passivated: number;
  /** serialized bytes of the states and metas in memory */
  cacheBytes: number;
}

export interface EntityRuntime {
  processCommand(request: CommandRequest): Promise<EntityState>;
  /**
   * The latest state; NotFoundError when the entity has no event. Never calls handlers.
   * `deadline` (epoch ms): a read of the store waits until then at most.
   */
  getState(entityId: string, options?: { readonly deadline?: number }): Promise<EntityState>;
  stats(): EntityRuntimeStats;
  /**
   * Drops the cached state of the entities `matches` selects (e.g. a shard given up): idle ones
   * at once, busy ones when their mailbox empties. Resolves when none of them is busy any more.
   * Commands arriving meanwhile are still taken; whether they are cached is `retain`'s call.
   */
  evict(matches: (entityId: string) => boolean): Promise<void>;
  /** Takes no new commands (ShuttingDownError), waits for queued and running ones and for snapshot saves. */
  close(): Promise<void>;
}

/**
 * The runtime's parts live beside it: the mailboxes and their bounds (mailbox.ts), a batch of
 * an entity's commands (batch.ts), its idempotency keys (entity-keys.ts), all sharing one
 * context (runtime-context.ts). Here: the API and the runtime's life (sweeps, eviction, close).
 */
export function createEntityRuntime(options: EntityRuntimeOptions): EntityRuntime {
  const ctx = createRuntimeContext(options);
  const { entities, clock, logger, retains, commandTimeoutMs } = ctx;
  const passivateAfterMs = options.passivateAfterMs ?? 120_000;
  const sweepIntervalMs = options.sweepIntervalMs ?? Math.min(passivateAfterMs, 10_000);
  let closing = false;
  let closed: Promise<void> | undefined;

  const sweeper = setInterval(() => {
    const removed = entities.passivateIdle(clock.now().getTime() - passivateAfterMs);
    if (removed > 0) logger.debug({ count: removed, active: entities.size }, 'passivated idle entities');
  }, sweepIntervalMs);
  sweeper.unref();

  return {
    processCommand(request) {
      try {
        assertValidEntityId(request.entityId);
        assertValidRetryHeaders(request);
        if (closing) throw new ShuttingDownError('shutting down: not taking new commands');
      } catch (error) {
        return Promise.reject(error);
      }
      const existing = entities.get(request.entityId);
      const refused = admit(ctx, request.entityId, existing);
      if (refused !== undefined) return Promise.reject(refused);
      const now = clock.now().getTime();
      let deadline = request.deadline ?? Infinity;
      if (commandTimeoutMs !== undefined) deadline = Math.min(deadline, now + commandTimeoutMs);
      const reply = enqueue(ctx, slotFor(ctx, request.entityId, existing, now), request, deadline);
      // Only after enqueueing: the new slot is busy now, so the cap never passivates it.
      trimCache(ctx);
      return reply;
    },

    async getState(entityId, options) {
      assertValidEntityId(entityId);
      if (closing) throw new ShuttingDownError('shutting down');
      const slot = entities.get(entityId);
      let current: EntityState | undefined;
      if (slot?.loaded && retains(entityId)) {
        current = slot.revision === 0 ? undefined : { state: slot.state!, meta: slot.meta! };
      } else {
        current = await readState(ctx.journal, ctx.snapshots, entityId, options?.deadline === undefined ? NO_DEADLINE : { deadline: options.deadline });
      }
      if (current === undefined) throw new NotFoundError(`entity ${JSON.stringify(entityId)} not found`);
      return current;
    },

    stats() {
      return { active: entities.size, passivated: entities.passivated, cacheBytes: entities.bytes };
    },

    evict(matches) {
      const busy = new Set<EntitySlot>();
      for (const slot of entities.list()) {
        if (!matches(slot.entityId)) continue;
        if (isBusy(slot)) busy.add(slot);
        else entities.remove(slot);
      }
      if (busy.size === 0) return Promise.resolve();
      return new Promise<void>((done) => ctx.evictions.add({ busy, done }));
    },

    close() {
      closing = true;
      closed ??= (async () => {
        clearInterval(sweeper);
        if (ctx.inFlight > 0) await new Promise<void>((resolve) => (ctx.idle = resolve));
        await ctx.snapshotter?.settled();
      })();
      return closed;
    },
  };
}

/** Reads the latest state without activating the entity (GetState of a passive entity). */
async function readState(journal: JournalPort, snapshots: SnapshotPort | undefined, entityId: string, read: ReadOptions): Promise<EntityState | undefined> {
  const { revision, state, meta } = await readStoredEntity(journal, snapshots, entityId, read);
  return revision === 0 ? undefined : { state, meta };
}

/** The idempotency key and expected revision, as the edge should have checked them already. */
function assertValidRetryHeaders(request: CommandRequest): void {
  const { idempotencyKey: key, expectedRevision } = request;
  if (key !== undefined && (key === '' || Buffer.byteLength(key) > MAX_IDEMPOTENCY_KEY_BYTES)) {
    throw new InvalidArgumentError(`an idempotency key must be 1 to ${MAX_IDEMPOTENCY_KEY_BYTES} bytes long`);
  }
  if (expectedRevision !== undefined && expectedRevision < 0n) throw new InvalidArgumentError('an expected revision must be >= 0');
}

import { SpanStatusCode } from '@opentelemetry/api';
import { publicMessageOf, silentLogger, type EntityState, type Logger } from '@chiefofstate/core';
import { ActiveEntities, type EntitySlot as Slot } from './active-entities.js';
import type { Command } from './command.js';
import { createDecider, type Decide } from './decide.js';
import type { EntityRuntimeOptions, IdempotencyEvent } from './entity-runtime.js';
import { readSideIdFieldBytes } from './message-size.js';
import type { Clock, JournalPort, SnapshotPort } from './ports.js';
import { createRefusals, type Refusals } from './refusals.js';
import { checkSnapshotPolicy } from './snapshot-policy.js';
import { createSnapshotter, type Snapshotter } from './snapshotter.js';

export type EntitySlot = Slot<Command>;

/** An evict call waiting for its busy entities to go idle. */
export interface Eviction {
  readonly busy: Set<EntitySlot>;
  readonly done: () => void;
}

/**
 * What the parts of the runtime (mailbox, batch, idempotency keys) share: its ports, its bounds
 * and the entities in memory. Created once per runtime; the parts are plain functions taking it,
 * so handling a command allocates no closures.
 */
export interface RuntimeContext {
  readonly journal: JournalPort;
  readonly snapshots: SnapshotPort | undefined;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly decide: Decide;
  readonly refusals: Refusals;
  readonly snapshotter: Snapshotter | undefined;
  readonly entities: ActiveEntities<Command>;
  readonly retains: (entityId: string) => boolean;
  readonly fenceOf: ((entityId: string) => bigint | undefined) | undefined;
  readonly commandTimeoutMs: number | undefined;
  readonly maxActive: number;
  readonly maxAttempts: number;
  readonly maxCommandsPerAppend: number;
  readonly mailboxSize: number;
  readonly maxInFlight: number;
  readonly cacheMaxBytes: number;
  readonly retentionMs: number;
  readonly maxKeysPerEntity: number;
  readonly onIdempotency: ((event: IdempotencyEvent, count: number) => void) | undefined;
  /** evictions waiting for busy entities to go idle */
  readonly evictions: Set<Eviction>;
  /** commands queued or running, all entities together */
  inFlight: number;
  /** told when the last command in flight settles (close waits for it) */
  idle: (() => void) | undefined;
}

const systemClock: Clock = { now: () => new Date() };

/** The runtime's options with their defaults applied. */
export function createRuntimeContext(options: EntityRuntimeOptions): RuntimeContext {
  const { journal, handler, snapshots } = options;
  const logger = options.logger ?? silentLogger;
  const clock = options.clock ?? systemClock;
  const policy = checkSnapshotPolicy(options.snapshotPolicy ?? { enabled: false, frequency: 0 });
  const maxMessageBytes = options.maxMessageBytes ?? 4 * 1024 * 1024;
  return {
    journal,
    snapshots,
    logger,
    clock,
    decide: createDecider({
      handler,
      clock,
      allowedStates: options.allowedStateTypes && new Set(options.allowedStateTypes),
      allowedEvents: options.allowedEventTypes && new Set(options.allowedEventTypes),
      maxMessageBytes,
      readSideIdBytes: options.readSideIds && options.readSideIds.length > 0 ? readSideIdFieldBytes(options.readSideIds) : undefined,
    }),
    refusals: createRefusals(options.onRefused, logger, clock),
    snapshotter:
      policy.enabled && snapshots !== undefined
        ? createSnapshotter({
            snapshots,
            journal,
            policy,
            logicalDeletion: options.logicalDeletion ?? false,
            maxPending: options.maxPendingSnapshots ?? 256,
            logger,
          })
        : undefined,
    entities: new ActiveEntities<Command>(),
    retains: options.retain ?? (() => true),
    fenceOf: options.fenceOf,
    commandTimeoutMs: options.commandTimeoutMs,
    maxActive: options.maxActive ?? 100_000,
    maxAttempts: Math.max(1, options.maxAttempts ?? 5),
    maxCommandsPerAppend: Math.max(1, options.maxCommandsPerAppend ?? 32),
    mailboxSize: options.mailboxSize ?? 256,
    maxInFlight: options.maxInFlight ?? 4096,
    cacheMaxBytes: options.cacheMaxBytes ?? 256 * 1024 * 1024,
    retentionMs: options.idempotencyRetentionMs ?? 24 * 60 * 60 * 1000,
    maxKeysPerEntity: Math.max(1, options.maxKeysPerEntity ?? 256),
    onIdempotency: options.onIdempotency,
    evictions: new Set(),
    inFlight: 0,
    idle: undefined,
  };
}

// ---- settling a command ---------------------------------------------------------------------

export function succeed(ctx: RuntimeContext, command: Command, value: EntityState): void {
  ctx.inFlight--;
  if (command.trace) {
    command.trace.span.setAttribute('cos.revision', value.meta.revisionNumber);
    command.trace.span.end();
  }
  command.resolve(value);
}

export function fail(ctx: RuntimeContext, command: Command, error: unknown): void {
  ctx.inFlight--;
  if (command.trace) {
    // what a caller may be told: addresses and the store's words stay in the log
    command.trace.span.setStatus({ code: SpanStatusCode.ERROR, message: publicMessageOf(error) });
    command.trace.span.end();
  }
  command.reject(error);
}

// ---- the cache's bounds ---------------------------------------------------------------------

export function setStateBytes(ctx: RuntimeContext, slot: EntitySlot, bytes: number): void {
  slot.stateBytes = bytes;
  ctx.entities.setBytes(slot, bytes + (slot.keys?.bytes ?? 0));
}

export function trimCache(ctx: RuntimeContext): void {
  const { entities, maxActive, cacheMaxBytes } = ctx;
  if (entities.size > maxActive || entities.bytes > cacheMaxBytes) entities.passivateOverCap(maxActive, cacheMaxBytes);
}

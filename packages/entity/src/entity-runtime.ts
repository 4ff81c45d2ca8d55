import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { timestampFromMs, type Any } from '@bufbuild/protobuf/wkt';
import {
  DeadlineExceededError,
  InvalidArgumentError,
  JournalConflictError,
  NotFoundError,
  ShuttingDownError,
  StoreError,
  assertValidEntityId,
} from '@chiefofstate/core';
import {
  EventWrapperSchema,
  HandleCommandRequestSchema,
  HandleEventRequestSchema,
  MetaDataSchema,
  StateWrapperSchema,
  emptyState,
  isUnsetAny,
  typeNameOf,
  type Header,
  type MetaData,
} from '@chiefofstate/protocol';
import { ActiveEntities, type EntitySlot, type Job } from './active-entities.js';
import type {
  Clock,
  HandlerCallOptions,
  JournalPort,
  Logger,
  SnapshotPort,
  StoredRevision,
  WriteHandlerPort,
} from './ports.js';

/** When to snapshot (COS_DISABLE_SNAPSHOT, COS_SNAPSHOT_FREQUENCY); same shape as @chiefofstate/snapshot's. */
export interface SnapshotPolicy {
  readonly enabled: boolean;
  /** snapshot whenever a command's events cross a multiple of this revision count */
  readonly frequency: number;
}

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
  /** snapshot saves allowed in flight; beyond, a snapshot is skipped (the next multiple takes one). Default 256 */
  maxPendingSnapshots?: number;
  logger?: Logger;
  clock?: Clock;
}

export interface ProcessCommandRequest {
  entityId: string;
  command: Any | undefined;
  /** request metadata for the handler: configured propagated headers, traceparent, tracestate */
  propagatedHeaders?: Record<string, string>;
  /** stored in each event's MetaData.headers */
  persistedHeaders?: Header[];
  /** the caller's cancellation: a command not yet persisted is abandoned */
  signal?: AbortSignal;
  /** the caller's deadline, epoch ms: no append once it has passed */
  deadline?: number;
}

/** An entity's state and the meta of its latest event. Shared with the cache: do not mutate. */
export interface EntityState {
  state: Any;
  meta: MetaData;
}

export interface EntityRuntimeStats {
  /** entities in memory */
  active: number;
  /** entities passivated since start */
  passivated: number;
}

export interface EntityRuntime {
  processCommand(request: ProcessCommandRequest): Promise<EntityState>;
  /** The latest state; NotFoundError when the entity has no event. Never calls handlers. */
  getState(entityId: string): Promise<EntityState>;
  stats(): EntityRuntimeStats;
  /** Takes no new commands (ShuttingDownError), waits for queued and running ones and for snapshot saves. */
  close(): Promise<void>;
}

const noopLogger: Logger = { warn: () => {}, error: () => {}, debug: () => {} };
const systemClock: Clock = { now: () => new Date() };

interface Command {
  readonly request: ProcessCommandRequest;
  /** epoch ms; Infinity when none */
  readonly deadline: number;
}

export function createEntityRuntime(options: EntityRuntimeOptions): EntityRuntime {
  const { journal, handler, snapshots } = options;
  const logger = options.logger ?? noopLogger;
  const clock = options.clock ?? systemClock;
  const policy = options.snapshotPolicy ?? { enabled: false, frequency: 0 };
  if (policy.enabled && (!Number.isSafeInteger(policy.frequency) || policy.frequency < 1)) {
    throw new InvalidArgumentError(`snapshot frequency must be a positive integer, got ${policy.frequency}`);
  }
  const snapshotting = policy.enabled && snapshots !== undefined;
  const logicalDeletion = options.logicalDeletion ?? false;
  const allowedStates = options.allowedStateTypes && new Set(options.allowedStateTypes);
  const allowedEvents = options.allowedEventTypes && new Set(options.allowedEventTypes);
  const commandTimeoutMs = options.commandTimeoutMs;
  const passivateAfterMs = options.passivateAfterMs ?? 120_000;
  const maxActive = options.maxActive ?? 100_000;
  const maxAttempts = Math.max(1, options.maxAttempts ?? 5);
  const maxPendingSnapshots = options.maxPendingSnapshots ?? 256;
  const sweepIntervalMs = options.sweepIntervalMs ?? Math.min(passivateAfterMs, 10_000);

  const entities = new ActiveEntities();
  let closing = false;
  let closed: Promise<void> | undefined;
  let inFlight = 0;
  let idle: (() => void) | undefined;
  const pendingSnapshots = new Set<Promise<void>>();

  const sweeper = setInterval(() => {
    const removed = entities.passivateIdle(clock.now().getTime() - passivateAfterMs);
    if (removed > 0) logger.debug('passivated idle entities', { count: removed, active: entities.size });
  }, sweepIntervalMs);
  sweeper.unref();

  // ---- mailbox -----------------------------------------------------------------------------

  function enqueue<T>(slot: EntitySlot, run: (slot: EntitySlot) => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      slot.jobs.push({ run, resolve, reject } as Job<unknown>);
      inFlight++;
      if (!slot.running) void drain(slot);
    });
  }

  /** Runs the slot's jobs one at a time, in arrival order. */
  async function drain(slot: EntitySlot): Promise<void> {
    slot.running = true;
    while (slot.head < slot.jobs.length) {
      const job = slot.jobs[slot.head]!;
      try {
        job.resolve(await job.run(slot));
      } catch (error) {
        job.reject(error);
      }
      slot.jobs[slot.head++] = undefined;
      inFlight--;
    }
    slot.jobs.length = 0;
    slot.head = 0;
    slot.running = false;
    if (entities.get(slot.entityId) === slot) entities.touch(slot, clock.now().getTime());
    if (entities.size > maxActive) entities.passivateOverCap(maxActive);
    if (inFlight === 0 && idle) idle();
  }

  function slotFor(entityId: string, now: number): EntitySlot {
    const slot = entities.get(entityId);
    if (slot === undefined) return entities.create(entityId, now);
    entities.touch(slot, now);
    return slot;
  }

  // ---- recovery ----------------------------------------------------------------------------

  async function load(slot: EntitySlot): Promise<void> {
    const latest = await journal.readLatest(slot.entityId);
    if (latest !== undefined) {
      const wrapper = decode(slot.entityId, latest, 'event', (bytes) => fromBinary(EventWrapperSchema, bytes));
      setLoaded(slot, latest, wrapper.resultingState, wrapper.meta);
      return;
    }
    // No event in the journal (e.g. deleted after a snapshot): the newest snapshot has the state.
    const snapshot = snapshots && (await snapshots.loadLatest(slot.entityId));
    if (snapshot !== undefined) {
      const wrapper = decode(slot.entityId, snapshot, 'snapshot', (bytes) =>
        fromBinary(StateWrapperSchema, bytes),
      );
      setLoaded(slot, snapshot, wrapper.state, wrapper.meta);
      return;
    }
    slot.state = emptyState();
    slot.meta = create(MetaDataSchema, { entityId: slot.entityId });
    slot.revision = 0;
    slot.loaded = true;
  }

  function setLoaded(slot: EntitySlot, stored: StoredRevision, state: Any | undefined, meta: MetaData | undefined): void {
    slot.revision = Number(stored.revision);
    slot.state = state ?? emptyState();
    slot.meta = meta ?? create(MetaDataSchema, { entityId: slot.entityId, revisionNumber: slot.revision });
    slot.loaded = true;
  }

  /** Reads the latest state without activating the entity (GetState of a passive entity). */
  async function readState(entityId: string): Promise<EntityState | undefined> {
    const probe = { entityId, loaded: false } as EntitySlot;
    await load(probe);
    return probe.revision === 0 ? undefined : { state: probe.state!, meta: probe.meta! };
  }

  // ---- one command -------------------------------------------------------------------------

  async function execute(slot: EntitySlot, command: Command): Promise<EntityState> {
    for (let attempt = 1; ; attempt++) {
      if (!slot.loaded) await load(slot);
      const outcome = await decide(slot, command);
      if (outcome === undefined) return { state: slot.state!, meta: slot.meta! };

      checkTime(command, 'before the events were persisted');
      const expectedRevision = slot.revision;
      try {
        await journal.append({
          entityId: slot.entityId,
          expectedRevision: BigInt(expectedRevision),
          events: outcome.events,
        });
      } catch (error) {
        // Whatever happened, the cache may no longer match the store: reload next time.
        slot.loaded = false;
        if (error instanceof JournalConflictError && attempt < maxAttempts) {
          logger.debug('journal conflict, reloading and retrying the command', {
            entityId: slot.entityId,
            expectedRevision,
            attempt,
          });
          continue;
        }
        throw error;
      }
      slot.state = outcome.state;
      slot.meta = outcome.meta;
      slot.revision = outcome.meta.revisionNumber;
      if (snapshotting) maybeSnapshot(slot.entityId, expectedRevision, outcome.state, outcome.meta);
      return { state: outcome.state, meta: outcome.meta };
    }
  }

  /** Asks the handler; returns the serialized events with the resulting state, or undefined for none. */
  async function decide(
    slot: EntitySlot,
    command: Command,
  ): Promise<{ events: Uint8Array[]; state: Any; meta: MetaData } | undefined> {
    const { request } = command;
    checkTime(command, 'before the command was handled');
    const response = await handler.handleCommand(
      create(HandleCommandRequestSchema, {
        command: request.command,
        priorState: slot.state,
        priorEventMeta: slot.meta,
      }),
      callOptions(command),
    );
    const events =
      response.events.length > 0 ? response.events : isUnsetAny(response.event) ? [] : [response.event!];
    if (events.length === 0) return undefined;
    if (allowedEvents) {
      for (const event of events) {
        if (!allowedEvents.has(typeNameOf(event.typeUrl))) {
          throw new InvalidArgumentError(`invalid event: ${event.typeUrl}`);
        }
      }
    }

    const revisionDate = timestampFromMs(clock.now().getTime());
    const headers = request.persistedHeaders ?? [];
    const serialized: Uint8Array[] = [];
    let state = slot.state!;
    let meta = slot.meta!;
    let revision = slot.revision;
    for (const event of events) {
      meta = create(MetaDataSchema, {
        entityId: slot.entityId,
        revisionNumber: ++revision,
        revisionDate,
        headers,
      });
      const { resultingState } = await handler.handleEvent(
        create(HandleEventRequestSchema, { event, priorState: state, eventMeta: meta }),
        callOptions(command),
      );
      if (resultingState === undefined || isUnsetAny(resultingState)) {
        throw new InvalidArgumentError('event handler replied with empty state');
      }
      if (allowedStates && !allowedStates.has(typeNameOf(resultingState.typeUrl))) {
        throw new InvalidArgumentError(`invalid state: ${resultingState.typeUrl}`);
      }
      state = resultingState;
      serialized.push(toBinary(EventWrapperSchema, create(EventWrapperSchema, { event, resultingState, meta })));
    }
    return { events: serialized, state, meta };
  }

  function callOptions(command: Command): HandlerCallOptions | undefined {
    const { request, deadline } = command;
    if (request.propagatedHeaders === undefined && request.signal === undefined && deadline === Infinity) {
      return undefined;
    }
    return {
      headers: request.propagatedHeaders,
      signal: request.signal,
      timeoutMs: deadline === Infinity ? undefined : deadline - clock.now().getTime(),
    };
  }

  function checkTime(command: Command, when: string): void {
    const { signal } = command.request;
    if (signal?.aborted) throw signal.reason ?? new DeadlineExceededError(`command cancelled ${when}`);
    if (command.deadline !== Infinity && clock.now().getTime() >= command.deadline) {
      throw new DeadlineExceededError(`deadline exceeded ${when}`);
    }
  }

  // ---- snapshots ---------------------------------------------------------------------------

  function maybeSnapshot(entityId: string, previousRevision: number, state: Any, meta: MetaData): void {
    const frequency = policy.frequency;
    if (Math.floor(meta.revisionNumber / frequency) <= Math.floor(previousRevision / frequency)) return;
    if (pendingSnapshots.size >= maxPendingSnapshots) {
      logger.warn('snapshot skipped: too many snapshot saves in flight', { entityId, revision: meta.revisionNumber });
      return;
    }
    const task = saveSnapshot(entityId, state, meta).finally(() => pendingSnapshots.delete(task));
    pendingSnapshots.add(task);
  }

  async function saveSnapshot(entityId: string, state: Any, meta: MetaData): Promise<void> {
    const revision = BigInt(meta.revisionNumber);
    try {
      const payload = toBinary(StateWrapperSchema, create(StateWrapperSchema, { state, meta }));
      const { oldestRetainedRevision } = await snapshots!.save({ entityId, revision, payload });
      if (logicalDeletion && oldestRetainedRevision > 0n) {
        const deleted = await journal.deleteEventsBefore(entityId, oldestRetainedRevision);
        logger.debug('deleted events older than the oldest retained snapshot', {
          entityId,
          before: oldestRetainedRevision.toString(),
          deleted,
        });
      }
    } catch (error) {
      logger.error('snapshot failed', { entityId, revision: revision.toString(), err: error });
    }
  }

  // ---- API ---------------------------------------------------------------------------------

  return {
    processCommand(request) {
      try {
        assertValidEntityId(request.entityId);
        if (closing) throw new ShuttingDownError('shutting down: not taking new commands');
      } catch (error) {
        return Promise.reject(error);
      }
      const now = clock.now().getTime();
      let deadline = request.deadline ?? Infinity;
      if (commandTimeoutMs !== undefined) deadline = Math.min(deadline, now + commandTimeoutMs);
      const command: Command = { request, deadline };
      const reply = enqueue(slotFor(request.entityId, now), (slot) => execute(slot, command));
      // Only after enqueueing: the new slot is busy now, so the cap never passivates it.
      if (entities.size > maxActive) entities.passivateOverCap(maxActive);
      return reply;
    },

    async getState(entityId) {
      assertValidEntityId(entityId);
      if (closing) throw new ShuttingDownError('shutting down');
      const slot = entities.get(entityId);
      let current: EntityState | undefined;
      if (slot?.loaded) {
        current = slot.revision === 0 ? undefined : { state: slot.state!, meta: slot.meta! };
      } else {
        current = await readState(entityId);
      }
      if (current === undefined) throw new NotFoundError(`entity ${JSON.stringify(entityId)} not found`);
      return current;
    },

    stats() {
      return { active: entities.size, passivated: entities.passivated };
    },

    close() {
      closing = true;
      closed ??= (async () => {
        clearInterval(sweeper);
        if (inFlight > 0) await new Promise<void>((resolve) => (idle = resolve));
        while (pendingSnapshots.size > 0) await Promise.allSettled([...pendingSnapshots]);
      })();
      return closed;
    },
  };
}

function decode<T>(entityId: string, stored: StoredRevision, what: string, run: (payload: Uint8Array) => T): T {
  try {
    // A plain copy: drivers hand out Buffers that may be slices of a larger pooled buffer,
    // which the cached state's bytes fields would otherwise keep alive.
    return run(new Uint8Array(stored.payload));
  } catch (error) {
    throw new StoreError(
      `cannot decode the ${what} of ${JSON.stringify(entityId)} at revision ${stored.revision}: ${
        error instanceof Error ? error.message : String(error)
      }`,
      { cause: error },
    );
  }
}

import { SpanStatusCode } from '@opentelemetry/api';
import type { Any } from '@bufbuild/protobuf/wkt';
import {
  CommitOutcomeUnknownError,
  IdempotencyKeyReusedError,
  InternalError,
  InvalidArgumentError,
  JournalConflictError,
  MessageTooLargeError,
  NotFoundError,
  OverloadedError,
  RevisionMismatchError,
  ShuttingDownError,
  assertValidEntityId,
  publicMessageOf,
  traceLogFields,
} from '@chiefofstate/core';
import { MAX_IDEMPOTENCY_KEY_BYTES, type MetaData } from '@chiefofstate/protocol';
import { ActiveEntities, isBusy, type EntitySlot as Slot } from './active-entities.js';
import { checkTime, commandTrace, type Command, type EntityState, type ProcessCommandRequest } from './command.js';
import { createDecider } from './decide.js';
import { KnownKeys, base64, commandDigest, errorRecord, replayOf, replyRecord } from './idempotency.js';
import { readSideIdFieldBytes } from './message-size.js';
import type { Clock, JournalPort, KeyRecord, Logger, ReadOptions, SnapshotPort, WriteHandlerPort } from './ports.js';
import { readStoredEntity } from './recovery.js';
import { createRefusals, type RefusalReason } from './refusals.js';
import { checkSnapshotPolicy, type SnapshotPolicy } from './snapshot-policy.js';
import { createSnapshotter } from './snapshotter.js';

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

export type { EntityState, ProcessCommandRequest } from './command.js';

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
  processCommand(request: ProcessCommandRequest): Promise<EntityState>;
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

const noopLogger: Logger = { warn: () => {}, error: () => {}, debug: () => {} };
const systemClock: Clock = { now: () => new Date() };

/** What one command of a batch came to, on top of the commands before it in the batch. */
interface Decision {
  readonly command: Command;
  /** its serialized EventWrappers; none when it produced no event or failed */
  readonly events: readonly Uint8Array[];
  /** the entity's state and meta after it */
  readonly state: Any;
  readonly meta: MetaData;
  /** serialized size of state and meta */
  readonly bytes: number;
  readonly failed: boolean;
  readonly error: unknown;
  /** its idempotency key and outcome, recorded by the append */
  readonly record: KeyRecord | undefined;
}

const NO_EVENTS: readonly Uint8Array[] = [];
const NO_COMMANDS: readonly Command[] = [];
const NO_DEADLINE: ReadOptions = {};

/** How long a read for `batch` may wait: until the latest deadline of its commands. */
function readFor(batch: readonly Command[]): ReadOptions {
  let deadline = 0;
  for (const command of batch) deadline = Math.max(deadline, command.deadline);
  return deadline === Infinity ? NO_DEADLINE : { deadline };
}
/** handled commands after which a busy mailbox drops their slots */
const COMPACT_AFTER = 1024;

export function createEntityRuntime(options: EntityRuntimeOptions): EntityRuntime {
  const { journal, handler, snapshots } = options;
  const logger = options.logger ?? noopLogger;
  const clock = options.clock ?? systemClock;
  const policy = checkSnapshotPolicy(options.snapshotPolicy ?? { enabled: false, frequency: 0 });
  const commandTimeoutMs = options.commandTimeoutMs;
  const passivateAfterMs = options.passivateAfterMs ?? 120_000;
  const maxActive = options.maxActive ?? 100_000;
  const maxAttempts = Math.max(1, options.maxAttempts ?? 5);
  const maxCommandsPerAppend = Math.max(1, options.maxCommandsPerAppend ?? 32);
  const sweepIntervalMs = options.sweepIntervalMs ?? Math.min(passivateAfterMs, 10_000);
  const mailboxSize = options.mailboxSize ?? 256;
  const maxInFlight = options.maxInFlight ?? 4096;
  const cacheMaxBytes = options.cacheMaxBytes ?? 256 * 1024 * 1024;
  const maxMessageBytes = options.maxMessageBytes ?? 4 * 1024 * 1024;
  const decide = createDecider({
    handler,
    clock,
    allowedStates: options.allowedStateTypes && new Set(options.allowedStateTypes),
    allowedEvents: options.allowedEventTypes && new Set(options.allowedEventTypes),
    maxMessageBytes,
    readSideIdBytes: options.readSideIds && options.readSideIds.length > 0 ? readSideIdFieldBytes(options.readSideIds) : undefined,
  });
  const refusals = createRefusals(options.onRefused, logger, clock);
  const retentionMs = options.idempotencyRetentionMs ?? 24 * 60 * 60 * 1000;
  const maxKeysPerEntity = Math.max(1, options.maxKeysPerEntity ?? 256);
  const onIdempotency = options.onIdempotency;

  const entities = new ActiveEntities<Command>();
  const retains = options.retain ?? (() => true);
  const fenceOf = options.fenceOf;
  /** evictions waiting for busy entities to go idle */
  const evictions = new Set<{ busy: Set<EntitySlot>; done: () => void }>();
  let closing = false;
  let closed: Promise<void> | undefined;
  let inFlight = 0;
  let idle: (() => void) | undefined;
  const snapshotter =
    policy.enabled && snapshots !== undefined
      ? createSnapshotter({
          snapshots,
          journal,
          policy,
          logicalDeletion: options.logicalDeletion ?? false,
          maxPending: options.maxPendingSnapshots ?? 256,
          logger,
        })
      : undefined;

  const sweeper = setInterval(() => {
    const removed = entities.passivateIdle(clock.now().getTime() - passivateAfterMs);
    if (removed > 0) logger.debug('passivated idle entities', { count: removed, active: entities.size });
  }, sweepIntervalMs);
  sweeper.unref();

  // ---- mailbox -----------------------------------------------------------------------------

  type EntitySlot = Slot<Command>;

  function enqueue(slot: EntitySlot, request: ProcessCommandRequest, deadline: number): Promise<EntityState> {
    return new Promise<EntityState>((resolve, reject) => {
      const traced = commandTrace(request);
      slot.jobs.push({ request, deadline, conflicts: 0, resolve, reject, ...(traced ? { trace: traced } : {}) });
      inFlight++;
      if (!slot.running) void drain(slot);
    });
  }

  function succeed(command: Command, value: EntityState): void {
    inFlight--;
    if (command.trace) {
      command.trace.span.setAttribute('cos.revision', value.meta.revisionNumber);
      command.trace.span.end();
    }
    command.resolve(value);
  }

  function fail(command: Command, error: unknown): void {
    inFlight--;
    if (command.trace) {
      // what a caller may be told: addresses and the store's words stay in the log
      command.trace.span.setStatus({ code: SpanStatusCode.ERROR, message: publicMessageOf(error) });
      command.trace.span.end();
    }
    command.reject(error);
  }

  /**
   * Runs the slot's commands in arrival order: the ones queued together (up to
   * maxCommandsPerAppend) are handled one at a time and their events persisted in one append.
   */
  async function drain(slot: EntitySlot): Promise<void> {
    slot.running = true;
    while (slot.head < slot.jobs.length) {
      const start = slot.head;
      const end = endBeforeRepeatedKey(slot.jobs as Command[], start, Math.min(slot.jobs.length, start + maxCommandsPerAppend));
      const batch = slot.jobs.slice(start, end) as Command[];
      for (let i = start; i < end; i++) slot.jobs[i] = undefined;
      // Not retained: another replica may own the entity and have moved on since the last batch.
      if (!retains(slot.entityId)) slot.loaded = false;
      let retry: readonly Command[];
      try {
        retry = await runBatch(slot, batch);
      } catch (error) {
        // not expected: runBatch settles what it can; whatever is left fails rather than hangs
        logger.error('command batch failed unexpectedly', { entityId: slot.entityId, err: error, ...traceLogFields(batch[0]?.trace?.span) });
        slot.loaded = false;
        retry = [];
      }
      // commands to run again go back in front of the ones that arrived meanwhile, in order
      slot.head = end - retry.length;
      for (let i = 0; i < retry.length; i++) slot.jobs[slot.head + i] = retry[i];
      // An entity that never runs dry would grow its array by a hole per command handled.
      if (slot.head >= COMPACT_AFTER) {
        slot.jobs.splice(0, slot.head);
        slot.head = 0;
      }
    }
    slot.jobs.length = 0;
    slot.head = 0;
    slot.running = false;
    if (entities.get(slot.entityId) === slot) {
      if (retains(slot.entityId)) entities.touch(slot, clock.now().getTime());
      else entities.remove(slot);
    }
    for (const eviction of evictions) {
      if (!eviction.busy.delete(slot)) continue;
      if (entities.get(slot.entityId) === slot) entities.remove(slot);
      if (eviction.busy.size === 0) {
        evictions.delete(eviction);
        eviction.done();
      }
    }
    trimCache();
    if (inFlight === 0 && idle) idle();
  }

  function trimCache(): void {
    if (entities.size > maxActive || entities.bytes > cacheMaxBytes) entities.passivateOverCap(maxActive, cacheMaxBytes);
  }

  function slotFor(entityId: string, slot: EntitySlot | undefined, now: number): EntitySlot {
    if (slot === undefined) return entities.create(entityId, now);
    entities.touch(slot, now);
    return slot;
  }

  /** The bounds on queued work: an error to refuse the command with at once, or undefined. */
  function admit(entityId: string, slot: EntitySlot | undefined): OverloadedError | undefined {
    if (slot !== undefined && slot.jobs.length - slot.head >= mailboxSize) {
      refusals.note('entity_mailbox');
      return new OverloadedError(
        `entity ${JSON.stringify(entityId)} overloaded: ${mailboxSize} commands already queued (COS_ENTITY_MAILBOX_SIZE)`,
      );
    }
    if (inFlight >= maxInFlight) {
      refusals.note('in_flight_commands');
      return new OverloadedError(`overloaded: ${maxInFlight} commands already in flight (COS_MAX_IN_FLIGHT_COMMANDS)`);
    }
    return undefined;
  }

  // ---- recovery ----------------------------------------------------------------------------

  async function load(slot: EntitySlot, read: ReadOptions): Promise<void> {
    // what the store holds may have changed (another writer, an append of unknown outcome)
    dropKeys(slot);
    const { revision, state, meta, bytes } = await readStoredEntity(journal, snapshots, slot.entityId, read);
    slot.revision = revision;
    slot.state = state;
    slot.meta = meta;
    slot.loaded = true;
    setStateBytes(slot, bytes);
  }

  function setStateBytes(slot: EntitySlot, bytes: number): void {
    slot.stateBytes = bytes;
    entities.setBytes(slot, bytes + (slot.keys?.bytes ?? 0));
  }

  // ---- idempotency keys ---------------------------------------------------------------------

  function dropKeys(slot: EntitySlot): void {
    if (slot.keys === undefined) return;
    slot.keys = undefined;
    setStateBytes(slot, slot.stateBytes);
  }

  /** The entity's keys in the store (at most maxKeysPerEntity; with more, `complete` is false). */
  async function loadKeys(slot: EntitySlot, read: ReadOptions): Promise<void> {
    const stored = await journal.readKeys(slot.entityId, maxKeysPerEntity + 1, read);
    const keys = new KnownKeys(maxKeysPerEntity, true);
    for (const { key, digest, recordedAt } of stored) keys.add(key, { digest: base64(digest), recordedAt: recordedAt.getTime(), outcome: undefined });
    slot.keys = keys;
    setStateBytes(slot, slot.stateBytes);
  }

  /**
   * Makes sure each key of the batch is either known here with its outcome or known to be new:
   * one read of the store for the keys it may hold that are not here (the entity has more keys
   * than kept in memory) and for the outcomes not kept in memory.
   */
  async function resolveKeys(
    slot: EntitySlot,
    keys: KnownKeys,
    batch: readonly Command[],
    read: ReadOptions,
  ): Promise<Map<string, KeyRecord> | undefined> {
    const now = clock.now().getTime();
    let wanted: string[] | undefined;
    for (const { request } of batch) {
      const key = request.idempotencyKey;
      if (key === undefined) continue;
      const known = keys.get(key, now, retentionMs);
      if (known === undefined ? !keys.complete : known.outcome === undefined) (wanted ??= []).push(key);
    }
    if (wanted === undefined) return undefined;
    const found = await journal.findKeys(slot.entityId, wanted, read);
    // the outcomes for this batch (memory keeps only the newest few)
    const outcomes = new Map<string, KeyRecord>();
    for (const record of found) {
      outcomes.set(record.key, record);
      keys.add(record.key, { digest: base64(record.digest), recordedAt: record.recordedAt.getTime(), outcome: record });
    }
    // known here, but gone from the store meanwhile (expired): new again
    for (const key of wanted) if (!outcomes.has(key)) keys.remove(key);
    setStateBytes(slot, slot.stateBytes);
    return outcomes;
  }

  function digestOf(command: Command): string {
    command.digest ??= commandDigest(command.request.command);
    return (command.digestText ??= base64(command.digest));
  }

  /**
   * Answers a command whose key is known with the outcome recorded for it; refuses it when its
   * body differs from the recorded one. Whether it answered.
   */
  function replayed(keys: KnownKeys, outcomes: Map<string, KeyRecord> | undefined, command: Command, key: string): boolean {
    const known = keys.get(key, clock.now().getTime(), retentionMs);
    if (known === undefined) return false;
    if (known.digest !== digestOf(command)) {
      onIdempotency?.('reused', 1);
      throw new IdempotencyKeyReusedError(
        `idempotency key ${JSON.stringify(key)} was already used on entity ${JSON.stringify(command.request.entityId)} with a different command: nothing was done`,
      );
    }
    // resolveKeys read every outcome not kept here
    const outcome = known.outcome ?? outcomes?.get(key);
    if (outcome === undefined) throw new InternalError(`the outcome recorded with idempotency key ${JSON.stringify(key)} was not read`);
    const replay = replayOf(outcome);
    onIdempotency?.('replayed', 1);
    if ('error' in replay) fail(command, replay.error);
    else succeed(command, replay);
    return true;
  }

  function recordOf(command: Command, failure: { error: unknown } | { state: Any; meta: MetaData }): KeyRecord | undefined {
    const key = command.request.idempotencyKey;
    if (key === undefined) return undefined;
    digestOf(command);
    return 'error' in failure ? errorRecord(key, command.digest!, failure.error) : replyRecord(key, command.digest!, failure.state, failure.meta);
  }

  /** Reads the latest state without activating the entity (GetState of a passive entity). */
  async function readState(entityId: string, read: ReadOptions): Promise<EntityState | undefined> {
    const { revision, state, meta } = await readStoredEntity(journal, snapshots, entityId, read);
    return revision === 0 ? undefined : { state, meta };
  }

  // ---- a batch of commands ----------------------------------------------------------------

  /**
   * Handles the commands one after another, each on the state the previous ones left, then
   * appends all their events at once; settles each command, or returns those to run again (in
   * order) because what they saw may never have been stored.
   *
   * The handler only ever sees one command at a time, in arrival order. Until a command of the
   * batch has produced events, the state is the stored one and outcomes are final at once;
   * after that, replies and failures wait for the append, since they rest on its events.
   */
  async function runBatch(slot: EntitySlot, batch: Command[]): Promise<readonly Command[]> {
    const keyed = batch.some((command) => command.request.idempotencyKey !== undefined);
    let keys: KnownKeys | undefined;
    let outcomes: Map<string, KeyRecord> | undefined;
    try {
      // the reads wait for the store as long as one of these commands still has a use for them
      const read = readFor(batch);
      if (!slot.loaded && keyed) {
        // the state and the keys at once: an entity's first keyed command waits for one round trip
        // (load, started first, drops the old keys before its first await, so the new ones stay)
        await Promise.all([load(slot, read), loadKeys(slot, read)]);
      } else if (!slot.loaded) {
        await load(slot, read);
      }
      if (keyed) {
        if (slot.keys === undefined) await loadKeys(slot, read);
        keys = slot.keys!;
        outcomes = await resolveKeys(slot, keys, batch, read);
      }
    } catch (error) {
      // The store failed this read (down, stalled, timed out): the commands queued with it
      // would each wait for a read of their own, one after another past their deadlines, so
      // they all fail now; nothing of theirs was written.
      for (const command of batch) fail(command, error);
      return NO_COMMANDS;
    }
    const { entityId } = slot;
    let state = slot.state!;
    let meta = slot.meta!;
    let bytes = slot.stateBytes;
    let revision = slot.revision;
    const decisions: Decision[] = [];
    for (const command of batch) {
      const { idempotencyKey: key, expectedRevision } = command.request;
      try {
        checkTime(command, clock.now().getTime(), 'before the command was handled');
        // a retry answers what its key recorded, before anything else
        if (key !== undefined && replayed(keys!, outcomes, command, key)) continue;
        if (expectedRevision !== undefined && expectedRevision !== BigInt(revision)) {
          throw new RevisionMismatchError(expectedRevision, BigInt(revision));
        }
        const outcome = await decide(entityId, state, meta, revision, command);
        if (outcome !== undefined) {
          ({ state, meta, bytes } = outcome);
          revision += outcome.events.length;
          const record = recordOf(command, { state, meta });
          decisions.push({ command, events: outcome.events, state, meta, bytes, failed: false, error: undefined, record });
        } else if (decisions.length === 0 && key === undefined) {
          succeed(command, { state, meta });
        } else {
          // a no-op with a key is recorded before it is answered
          const record = recordOf(command, { state, meta });
          decisions.push({ command, events: NO_EVENTS, state, meta, bytes, failed: false, error: undefined, record });
        }
      } catch (error) {
        if (error instanceof MessageTooLargeError) {
          refusals.note('message_too_large');
          // the handler's doing, and rare: worth a line naming the entity
          logger.warn('command refused: its state is too large for a message', { entityId, err: error, ...traceLogFields(command.trace?.span) });
        }
        // a refusal a retry would meet again is recorded with its key before it is answered
        const record = recordOf(command, { error });
        if (decisions.length === 0 && record === undefined) fail(command, error);
        else decisions.push({ command, events: NO_EVENTS, state, meta, bytes, failed: true, error, record });
      }
    }
    if (decisions.length === 0) return NO_COMMANDS;

    // No append once a command's time is up: it fails, and the ones after it, which built on
    // its events, run again.
    let cut = decisions.length;
    for (let i = 0; i < decisions.length; i++) {
      const decision = decisions[i]!;
      if (decision.events.length === 0) continue;
      try {
        checkTime(decision.command, clock.now().getTime(), 'before the events were persisted');
      } catch (error) {
        cut = i;
        fail(decision.command, error);
        break;
      }
    }
    const later = cut < decisions.length ? decisions.slice(cut + 1).map((d) => d.command) : NO_COMMANDS;
    if (cut === 0) return later;
    const kept = cut < decisions.length ? decisions.slice(0, cut) : decisions;
    const events = kept.length === 1 ? kept[0]!.events : kept.flatMap((d) => d.events);

    let records: KeyRecord[] | undefined;
    for (const decision of kept) if (decision.record !== undefined) (records ??= []).push(decision.record);

    const expectedRevision = slot.revision;
    let writtenAt: Date;
    try {
      const { trace: traced } = kept[0]!.command;
      // the database waits as long as the latest of these commands still has a use for the answer
      let deadline = 0;
      for (const decision of kept) deadline = Math.max(deadline, decision.command.deadline);
      const fence = fenceOf?.(entityId);
      ({ writtenAt } = await journal.append({
        entityId,
        expectedRevision: BigInt(expectedRevision),
        events,
        ...(records ? { keys: records } : {}),
        ...(traced ? { traceContext: traced.context } : {}),
        ...(deadline !== Infinity ? { deadline } : {}),
        ...(fence !== undefined ? { fence } : {}),
      }));
    } catch (error) {
      // Whatever happened, the cache may no longer match the store: reload next time.
      slot.loaded = false;
      const conflict = error instanceof JournalConflictError;
      if (conflict) {
        logger.debug('journal conflict, reloading and retrying the commands', {
          entityId,
          expectedRevision,
          commands: kept.length,
          ...traceLogFields(kept[0]!.command.trace?.span),
        });
      } else if (error instanceof CommitOutcomeUnknownError) {
        // never retried: the events may be persisted; the next command reloads what is
        logger.warn('commit outcome unknown: the commands fail, the entity is reloaded from the store', {
          entityId,
          expectedRevision,
          commands: kept.length,
          ...traceLogFields(kept[0]!.command.trace?.span),
        });
      }
      const retry: Command[] = [];
      for (const decision of kept) {
        // without events and key, its outcome rested on the others' events: run it again
        if (decision.events.length === 0 && decision.record === undefined) retry.push(decision.command);
        else if (conflict && ++decision.command.conflicts < maxAttempts) retry.push(decision.command);
        // its key alone may or may not be recorded: the reload tells, and answers it or runs it again
        else if (decision.events.length === 0 && error instanceof CommitOutcomeUnknownError) retry.push(decision.command);
        else fail(decision.command, error);
      }
      // the journal's queue was full: nothing was written
      if (error instanceof OverloadedError) refusals.note('journal_queue', kept.length - retry.length);
      return later.length === 0 ? retry : [...retry, ...later];
    }
    const last = kept[kept.length - 1]!;
    slot.state = last.state;
    slot.meta = last.meta;
    slot.revision = expectedRevision + events.length;
    if (records !== undefined) {
      const known = (slot.keys ??= new KnownKeys(maxKeysPerEntity, false));
      for (const record of records) known.add(record.key, { digest: base64(record.digest), recordedAt: writtenAt.getTime(), outcome: record });
      onIdempotency?.('stored', records.length);
    }
    setStateBytes(slot, last.bytes);
    // this slot is busy (never passivated here); idle ones make room when the cache is over
    if (entities.bytes > cacheMaxBytes) trimCache();
    snapshotter?.appended(entityId, expectedRevision, last.state, last.meta);
    for (const decision of kept) {
      if (decision.failed) fail(decision.command, decision.error);
      else succeed(decision.command, { state: decision.state, meta: decision.meta });
    }
    return later;
  }





  // ---- API ---------------------------------------------------------------------------------

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
      const refused = admit(request.entityId, existing);
      if (refused !== undefined) return Promise.reject(refused);
      const now = clock.now().getTime();
      let deadline = request.deadline ?? Infinity;
      if (commandTimeoutMs !== undefined) deadline = Math.min(deadline, now + commandTimeoutMs);
      const reply = enqueue(slotFor(request.entityId, existing, now), request, deadline);
      // Only after enqueueing: the new slot is busy now, so the cap never passivates it.
      trimCache();
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
        current = await readState(entityId, options?.deadline === undefined ? NO_DEADLINE : { deadline: options.deadline });
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
      return new Promise<void>((done) => evictions.add({ busy, done }));
    },

    close() {
      closing = true;
      closed ??= (async () => {
        clearInterval(sweeper);
        if (inFlight > 0) await new Promise<void>((resolve) => (idle = resolve));
        await snapshotter?.settled();
      })();
      return closed;
    },
  };
}

/** The idempotency key and expected revision, as the edge should have checked them already. */
function assertValidRetryHeaders(request: ProcessCommandRequest): void {
  const { idempotencyKey: key, expectedRevision } = request;
  if (key !== undefined && (key === '' || Buffer.byteLength(key) > MAX_IDEMPOTENCY_KEY_BYTES)) {
    throw new InvalidArgumentError(`an idempotency key must be 1 to ${MAX_IDEMPOTENCY_KEY_BYTES} bytes long`);
  }
  if (expectedRevision !== undefined && expectedRevision < 0n) throw new InvalidArgumentError('an expected revision must be >= 0');
}

/**
 * The end of a batch starting at `start`: before the first command repeating the idempotency key
 * of an earlier one of the batch, which must find that one's recorded outcome (next batch).
 */
function endBeforeRepeatedKey(jobs: readonly (Command | undefined)[], start: number, end: number): number {
  let first: string | undefined;
  let seen: Set<string> | undefined;
  for (let i = start; i < end; i++) {
    const key = jobs[i]!.request.idempotencyKey;
    if (key === undefined) continue;
    if (first === undefined) {
      first = key;
      continue;
    }
    seen ??= new Set([first]);
    if (seen.has(key)) return i;
    seen.add(key);
  }
  return end;
}

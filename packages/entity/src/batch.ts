import type { Any } from '@bufbuild/protobuf/wkt';
import {
  CommitOutcomeUnknownError,
  JournalConflictError,
  MessageTooLargeError,
  OverloadedError,
  RevisionMismatchError,
  traceLogFields,
} from '@chiefofstate/core';
import type { MetaData } from '@chiefofstate/protocol';
import { checkTime, type Command } from './command.js';
import { dropKeys, keepKeys, loadKeys, recordOf, rememberRecorded, replayed, resolveKeys } from './entity-keys.js';
import type { KnownKeys } from './idempotency.js';
import type { JournalAppend, KeyRecord, ReadOptions } from './ports.js';
import { readStoredEntity, storedEntityOf, type StoredEntity } from './recovery.js';
import { fail, setStateBytes, succeed, trimCache, type EntitySlot, type RuntimeContext } from './runtime-context.js';

/*
 * A batch of one entity's queued commands: handled one after another, their events persisted
 * in one append, then settled.
 */

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
export const NO_COMMANDS: readonly Command[] = [];
export const NO_DEADLINE: ReadOptions = {};

/** How long a read for `batch` may wait: until the latest deadline of its commands. */
function readFor(batch: readonly Command[]): ReadOptions {
  let deadline = 0;
  for (const command of batch) deadline = Math.max(deadline, command.deadline);
  return deadline === Infinity ? NO_DEADLINE : { deadline };
}

/**
 * Handles the commands one after another, each on the state the previous ones left, then
 * appends all their events at once; settles each command, or returns those to run again (in
 * order) because what they saw may never have been stored.
 *
 * The handler only ever sees one command at a time, in arrival order. Until a command of the
 * batch has produced events, the state is the stored one and outcomes are final at once;
 * after that, replies and failures wait for the append, since they rest on its events.
 */
export async function runBatch(ctx: RuntimeContext, slot: EntitySlot, batch: Command[]): Promise<readonly Command[]> {
  const keyed = batch.some((command) => command.request.idempotencyKey !== undefined);
  let keys: KnownKeys | undefined;
  let outcomes: Map<string, KeyRecord> | undefined;
  try {
    // the reads wait for the store as long as one of these commands still has a use for them
    const read = readFor(batch);
    if (!slot.loaded && keyed) {
      // the state and the keys in one statement: an entity's first keyed command waits for one round trip
      await loadWithKeys(ctx, slot, read);
    } else if (!slot.loaded) {
      await load(ctx, slot, read);
    }
    if (keyed) {
      if (slot.keys === undefined) await loadKeys(ctx, slot, read);
      keys = slot.keys!;
      outcomes = await resolveKeys(ctx, slot, keys, batch, read);
    }
  } catch (error) {
    // The store failed this read (down, stalled, timed out): the commands queued with it
    // would each wait for a read of their own, one after another past their deadlines, so
    // they all fail now; nothing of theirs was written.
    for (const command of batch) fail(ctx, command, error);
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
      checkTime(command, ctx.clock.now().getTime(), 'before the command was handled');
      // a retry answers what its key recorded, before anything else
      if (key !== undefined && replayed(ctx, keys!, outcomes, command, key)) continue;
      if (expectedRevision !== undefined && expectedRevision !== BigInt(revision)) {
        throw new RevisionMismatchError(expectedRevision, BigInt(revision));
      }
      const outcome = await ctx.decide(entityId, state, meta, revision, command);
      if (outcome !== undefined) {
        ({ state, meta, bytes } = outcome);
        revision += outcome.events.length;
        const record = recordOf(command, { state, meta });
        decisions.push({ command, events: outcome.events, state, meta, bytes, failed: false, error: undefined, record });
      } else if (decisions.length === 0 && key === undefined) {
        succeed(ctx, command, { state, meta });
      } else {
        // a no-op with a key is recorded before it is answered
        const record = recordOf(command, { state, meta });
        decisions.push({ command, events: NO_EVENTS, state, meta, bytes, failed: false, error: undefined, record });
      }
    } catch (error) {
      refused(ctx, decisions, command, error, state, meta, bytes);
    }
  }
  if (decisions.length === 0) return NO_COMMANDS;

  const cut = cutAtDeadline(ctx, decisions);
  const later = cut < decisions.length ? decisions.slice(cut + 1).map((d) => d.command) : NO_COMMANDS;
  if (cut === 0) return later;
  const kept = cut < decisions.length ? decisions.slice(0, cut) : decisions;
  const events = kept.length === 1 ? kept[0]!.events : kept.flatMap((d) => d.events);
  let records: KeyRecord[] | undefined;
  for (const decision of kept) if (decision.record !== undefined) (records ??= []).push(decision.record);

  const expectedRevision = slot.revision;
  let writtenAt: Date;
  try {
    ({ writtenAt } = await ctx.journal.append(appendOf(ctx, entityId, expectedRevision, kept, events, records)));
  } catch (error) {
    const retry = afterFailedAppend(ctx, slot, expectedRevision, kept, error);
    return later.length === 0 ? retry : [...retry, ...later];
  }
  appended(ctx, slot, expectedRevision, kept, events.length, records, writtenAt);
  return later;
}

async function load(ctx: RuntimeContext, slot: EntitySlot, read: ReadOptions): Promise<void> {
  // what the store holds may have changed (another writer, an append of unknown outcome)
  dropKeys(ctx, slot);
  loaded(ctx, slot, await readStoredEntity(ctx.journal, ctx.snapshots, slot.entityId, read));
}

async function loadWithKeys(ctx: RuntimeContext, slot: EntitySlot, read: ReadOptions): Promise<void> {
  dropKeys(ctx, slot);
  const { latest, keys } = await ctx.journal.readLatestWithKeys(slot.entityId, ctx.maxKeysPerEntity + 1, read);
  loaded(ctx, slot, await storedEntityOf(ctx.snapshots, slot.entityId, latest, read));
  keepKeys(ctx, slot, keys);
}

function loaded(ctx: RuntimeContext, slot: EntitySlot, { revision, state, meta, bytes }: StoredEntity): void {
  slot.revision = revision;
  slot.state = state;
  slot.meta = meta;
  slot.loaded = true;
  setStateBytes(ctx, slot, bytes);
}

/** A command of the batch failed: at once, or after the append when its outcome rests on it or is recorded. */
function refused(ctx: RuntimeContext, decisions: Decision[], command: Command, error: unknown, state: Any, meta: MetaData, bytes: number): void {
  if (error instanceof MessageTooLargeError) {
    ctx.refusals.note('message_too_large');
    // the handler's doing, and rare: worth a line naming the entity
    ctx.logger.warn(
      { entityId: command.request.entityId, err: error, ...traceLogFields(command.trace?.span) },
      'command refused: its state is too large for a message',
    );
  }
  // a refusal a retry would meet again is recorded with its key before it is answered
  const record = recordOf(command, { error });
  if (decisions.length === 0 && record === undefined) fail(ctx, command, error);
  else decisions.push({ command, events: NO_EVENTS, state, meta, bytes, failed: true, error, record });
}

/**
 * No append once a command's time is up: it fails, and the ones after it, which built on its
 * events, run again. The index of the first such command; decisions.length for none.
 */
function cutAtDeadline(ctx: RuntimeContext, decisions: readonly Decision[]): number {
  for (let i = 0; i < decisions.length; i++) {
    const decision = decisions[i]!;
    if (decision.events.length === 0) continue;
    try {
      checkTime(decision.command, ctx.clock.now().getTime(), 'before the events were persisted');
    } catch (error) {
      fail(ctx, decision.command, error);
      return i;
    }
  }
  return decisions.length;
}

function appendOf(
  ctx: RuntimeContext,
  entityId: string,
  expectedRevision: number,
  kept: readonly Decision[],
  events: readonly Uint8Array[],
  records: KeyRecord[] | undefined,
): JournalAppend {
  const { trace: traced } = kept[0]!.command;
  // the database waits as long as the latest of these commands still has a use for the answer
  let deadline = 0;
  for (const decision of kept) deadline = Math.max(deadline, decision.command.deadline);
  const fence = ctx.fenceOf?.(entityId);
  return {
    entityId,
    expectedRevision: BigInt(expectedRevision),
    events,
    ...(records ? { keys: records } : {}),
    ...(traced ? { traceContext: traced.context } : {}),
    ...(deadline !== Infinity ? { deadline } : {}),
    ...(fence !== undefined ? { fence } : {}),
  };
}

/** The append failed: settles the commands it cannot run again, returns the others (in order). */
function afterFailedAppend(ctx: RuntimeContext, slot: EntitySlot, expectedRevision: number, kept: readonly Decision[], error: unknown): Command[] {
  const { entityId } = slot;
  // Whatever happened, the cache may no longer match the store: reload next time.
  slot.loaded = false;
  const conflict = error instanceof JournalConflictError;
  if (conflict) {
    ctx.logger.debug(
      { entityId, expectedRevision, commands: kept.length, ...traceLogFields(kept[0]!.command.trace?.span) },
      'journal conflict, reloading and retrying the commands',
    );
  } else if (error instanceof CommitOutcomeUnknownError) {
    // never retried: the events may be persisted; the next command reloads what is
    ctx.logger.warn(
      { entityId, expectedRevision, commands: kept.length, ...traceLogFields(kept[0]!.command.trace?.span) },
      'commit outcome unknown: the commands fail, the entity is reloaded from the store',
    );
  }
  const retry: Command[] = [];
  for (const decision of kept) {
    // without events and key, its outcome rested on the others' events: run it again
    if (decision.events.length === 0 && decision.record === undefined) retry.push(decision.command);
    else if (conflict && ++decision.command.conflicts < ctx.maxAttempts) retry.push(decision.command);
    // its key alone may or may not be recorded: the reload tells, and answers it or runs it again
    else if (decision.events.length === 0 && error instanceof CommitOutcomeUnknownError) retry.push(decision.command);
    else fail(ctx, decision.command, error);
  }
  // the journal's queue was full: nothing was written
  if (error instanceof OverloadedError) ctx.refusals.note('journal_queue', kept.length - retry.length);
  return retry;
}

/** The append succeeded: the cache moves on to its last state, and the commands are settled. */
function appended(
  ctx: RuntimeContext,
  slot: EntitySlot,
  expectedRevision: number,
  kept: readonly Decision[],
  eventCount: number,
  records: readonly KeyRecord[] | undefined,
  writtenAt: Date,
): void {
  const last = kept[kept.length - 1]!;
  slot.state = last.state;
  slot.meta = last.meta;
  slot.revision = expectedRevision + eventCount;
  if (records !== undefined) rememberRecorded(ctx, slot, records, writtenAt);
  setStateBytes(ctx, slot, last.bytes);
  // this slot is busy (never passivated here); idle ones make room when the cache is over
  if (ctx.entities.bytes > ctx.cacheMaxBytes) trimCache(ctx);
  ctx.snapshotter?.appended(slot.entityId, expectedRevision, last.state, last.meta);
  for (const decision of kept) {
    if (decision.failed) fail(ctx, decision.command, decision.error);
    else succeed(ctx, decision.command, { state: decision.state, meta: decision.meta });
  }
}

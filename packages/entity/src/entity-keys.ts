import { IdempotencyKeyReusedError, InternalError, type EntityState } from '@chiefofstate/core';
import type { Command } from './command.js';
import { KnownKeys, base64, commandDigest, errorRecord, replayOf, replyRecord } from './idempotency.js';
import type { KeyRecord, ReadOptions, StoredKeyDigest } from './ports.js';
import { fail, setStateBytes, succeed, type EntitySlot, type RuntimeContext } from './runtime-context.js';

/*
 * An entity's idempotency keys in the runtime: read from the store when a batch needs them,
 * answering retries with their recorded outcome, and recording the outcomes of new commands.
 */

export function dropKeys(ctx: RuntimeContext, slot: EntitySlot): void {
  if (slot.keys === undefined) return;
  slot.keys = undefined;
  setStateBytes(ctx, slot, slot.stateBytes);
}

/** The entity's keys in the store (at most maxKeysPerEntity; with more, `complete` is false). */
export async function loadKeys(ctx: RuntimeContext, slot: EntitySlot, read: ReadOptions): Promise<void> {
  keepKeys(ctx, slot, await ctx.journal.readKeys(slot.entityId, ctx.maxKeysPerEntity + 1, read));
}

/** The keys read from the store (maxKeysPerEntity + 1 asked for) as the entity's known keys. */
export function keepKeys(ctx: RuntimeContext, slot: EntitySlot, stored: readonly StoredKeyDigest[]): void {
  const { maxKeysPerEntity } = ctx;
  const keys = new KnownKeys(maxKeysPerEntity, true);
  for (const { key, digest, recordedAt } of stored) keys.add(key, { digest: base64(digest), recordedAt: recordedAt.getTime(), outcome: undefined });
  slot.keys = keys;
  setStateBytes(ctx, slot, slot.stateBytes);
}

/**
 * Makes sure each key of the batch is either known here with its outcome or known to be new:
 * one read of the store for the keys it may hold that are not here (the entity has more keys
 * than kept in memory) and for the outcomes not kept in memory.
 */
export async function resolveKeys(
  ctx: RuntimeContext,
  slot: EntitySlot,
  keys: KnownKeys,
  batch: readonly Command[],
  read: ReadOptions,
): Promise<Map<string, KeyRecord> | undefined> {
  const now = ctx.clock.now().getTime();
  let wanted: string[] | undefined;
  for (const { request } of batch) {
    const key = request.idempotencyKey;
    if (key === undefined) continue;
    const known = keys.get(key, now, ctx.retentionMs);
    if (known === undefined ? !keys.complete : known.outcome === undefined) (wanted ??= []).push(key);
  }
  if (wanted === undefined) return undefined;
  const found = await ctx.journal.findKeys(slot.entityId, wanted, read);
  // the outcomes for this batch (memory keeps only the newest few)
  const outcomes = new Map<string, KeyRecord>();
  for (const record of found) {
    outcomes.set(record.key, record);
    keys.add(record.key, { digest: base64(record.digest), recordedAt: record.recordedAt.getTime(), outcome: record });
  }
  // known here, but gone from the store meanwhile (expired): new again
  for (const key of wanted) if (!outcomes.has(key)) keys.remove(key);
  setStateBytes(ctx, slot, slot.stateBytes);
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
export function replayed(
  ctx: RuntimeContext,
  keys: KnownKeys,
  outcomes: Map<string, KeyRecord> | undefined,
  command: Command,
  key: string,
): boolean {
  const known = keys.get(key, ctx.clock.now().getTime(), ctx.retentionMs);
  if (known === undefined) return false;
  if (known.digest !== digestOf(command)) {
    ctx.onIdempotency?.('reused', 1);
    throw new IdempotencyKeyReusedError(
      `idempotency key ${JSON.stringify(key)} was already used on entity ${JSON.stringify(command.request.entityId)} with a different command: nothing was done`,
    );
  }
  // resolveKeys read every outcome not kept here
  const outcome = known.outcome ?? outcomes?.get(key);
  if (outcome === undefined) throw new InternalError(`the outcome recorded with idempotency key ${JSON.stringify(key)} was not read`);
  const replay = replayOf(outcome);
  ctx.onIdempotency?.('replayed', 1);
  if ('error' in replay) fail(ctx, command, replay.error);
  else succeed(ctx, command, replay);
  return true;
}

/** What the append records with the command's key, if it has one and its outcome is final. */
export function recordOf(command: Command, failure: { error: unknown } | EntityState): KeyRecord | undefined {
  const key = command.request.idempotencyKey;
  if (key === undefined) return undefined;
  digestOf(command);
  return 'error' in failure ? errorRecord(key, command.digest!, failure.error) : replyRecord(key, command.digest!, failure.state, failure.meta);
}

/** The keys an append recorded, known here from now on. */
export function rememberRecorded(ctx: RuntimeContext, slot: EntitySlot, records: readonly KeyRecord[], writtenAt: Date): void {
  const known = (slot.keys ??= new KnownKeys(ctx.maxKeysPerEntity, false));
  for (const record of records) known.add(record.key, { digest: base64(record.digest), recordedAt: writtenAt.getTime(), outcome: record });
  ctx.onIdempotency?.('stored', records.length);
}

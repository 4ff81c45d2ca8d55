import { OverloadedError, traceLogFields, type CommandRequest, type EntityState } from '@chiefofstate/core';
import { NO_COMMANDS, runBatch } from './batch.js';
import { commandTrace, type Command } from './command.js';
import { trimCache, type EntitySlot, type RuntimeContext } from './runtime-context.js';

/*
 * The mailboxes: one queue of commands per active entity, its bounds, and the loop that runs
 * an entity's queued commands batch after batch.
 */

/** handled commands after which a busy mailbox drops their slots */
const COMPACT_AFTER = 1024;

/** The bounds on queued work: an error to refuse the command with at once, or undefined. */
export function admit(ctx: RuntimeContext, entityId: string, slot: EntitySlot | undefined): OverloadedError | undefined {
  const { mailboxSize, maxInFlight } = ctx;
  if (slot !== undefined && slot.jobs.length - slot.head >= mailboxSize) {
    ctx.refusals.note('entity_mailbox');
    return new OverloadedError(
      `entity ${JSON.stringify(entityId)} overloaded: ${mailboxSize} commands already queued (COS_ENTITY_MAILBOX_SIZE)`,
    );
  }
  if (ctx.inFlight >= maxInFlight) {
    ctx.refusals.note('in_flight_commands');
    return new OverloadedError(`overloaded: ${maxInFlight} commands already in flight (COS_MAX_IN_FLIGHT_COMMANDS)`);
  }
  return undefined;
}

export function slotFor(ctx: RuntimeContext, entityId: string, slot: EntitySlot | undefined, now: number): EntitySlot {
  if (slot === undefined) return ctx.entities.create(entityId, now);
  ctx.entities.touch(slot, now);
  return slot;
}

export function enqueue(ctx: RuntimeContext, slot: EntitySlot, request: CommandRequest, deadline: number): Promise<EntityState> {
  return new Promise<EntityState>((resolve, reject) => {
    const traced = commandTrace(request);
    slot.jobs.push({ request, deadline, conflicts: 0, resolve, reject, ...(traced ? { trace: traced } : {}) });
    ctx.inFlight++;
    if (!slot.running) void drain(ctx, slot);
  });
}

/**
 * Runs the slot's commands in arrival order: the ones queued together (up to
 * maxCommandsPerAppend) are handled one at a time and their events persisted in one append.
 */
async function drain(ctx: RuntimeContext, slot: EntitySlot): Promise<void> {
  slot.running = true;
  while (slot.head < slot.jobs.length) {
    const start = slot.head;
    const end = endBeforeRepeatedKey(slot.jobs as Command[], start, Math.min(slot.jobs.length, start + ctx.maxCommandsPerAppend));
    const batch = slot.jobs.slice(start, end) as Command[];
    for (let i = start; i < end; i++) slot.jobs[i] = undefined;
    // Not retained: another replica may own the entity and have moved on since the last batch.
    if (!ctx.retains(slot.entityId)) slot.loaded = false;
    let retry: readonly Command[];
    try {
      retry = await runBatch(ctx, slot, batch);
    } catch (error) {
      // not expected: runBatch settles what it can; whatever is left fails rather than hangs
      ctx.logger.error({ entityId: slot.entityId, err: error, ...traceLogFields(batch[0]?.trace?.span) }, 'command batch failed unexpectedly');
      slot.loaded = false;
      retry = NO_COMMANDS;
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
  drained(ctx, slot);
}

/** The slot's mailbox ran dry: it stays cached or goes, evictions waiting for it may end. */
function drained(ctx: RuntimeContext, slot: EntitySlot): void {
  const { entities } = ctx;
  if (entities.get(slot.entityId) === slot) {
    if (ctx.retains(slot.entityId)) entities.touch(slot, ctx.clock.now().getTime());
    else entities.remove(slot);
  }
  for (const eviction of ctx.evictions) {
    if (!eviction.busy.delete(slot)) continue;
    if (entities.get(slot.entityId) === slot) entities.remove(slot);
    if (eviction.busy.size === 0) {
      ctx.evictions.delete(eviction);
      eviction.done();
    }
  }
  trimCache(ctx);
  if (ctx.inFlight === 0 && ctx.idle) ctx.idle();
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

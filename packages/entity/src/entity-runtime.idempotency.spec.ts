import { create, toBinary } from '@bufbuild/protobuf';
import {
  CommitOutcomeUnknownError,
  DeadlineExceededError,
  HandlerFailedError,
  IdempotencyKeyReusedError,
  InvalidArgumentError,
  RevisionMismatchError,
  type EntityState,
} from '@chiefofstate/core';
import { ProcessCommandResponseSchema } from '@chiefofstate/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { createEntityRuntime, type EntityRuntime, type EntityRuntimeOptions, type IdempotencyEvent } from './entity-runtime.js';
import { InMemoryJournal } from './test-support/in-memory-stores.js';
import { FAILURE_DETAIL, str, textOf, useTestHandler } from './test-support/test-handler.js';

const handler = useTestHandler();
const runtimes: EntityRuntime[] = [];
afterEach(async () => {
  await Promise.all(runtimes.splice(0).map((r) => r.close()));
  handler.reset();
});

function setup(options: Partial<EntityRuntimeOptions> = {}, journal = new InMemoryJournal()) {
  const events: Array<[IdempotencyEvent, number]> = [];
  const runtime = createEntityRuntime({
    journal,
    handler: handler.client(),
    onIdempotency: (event, count) => events.push([event, count]),
    ...options,
  });
  runtimes.push(runtime);
  return { runtime, journal, events };
}

const send = (runtime: EntityRuntime, entityId: string, command: string, extra: { idempotencyKey?: string; expectedRevision?: bigint; deadline?: number } = {}) =>
  runtime.processCommand({ entityId, command: str(command), ...extra });

/** the reply as the edge serializes it */
const bytesOf = (reply: EntityState) => Buffer.from(toBinary(ProcessCommandResponseSchema, create(ProcessCommandResponseSchema, reply)));

async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

const commandsFor = (entityId: string) => handler.commands.filter((c) => c.request.priorEventMeta?.entityId === entityId).length;

describe('idempotency keys', () => {
  it('answers a retry with the first reply, byte for byte, without calling the handler again', async () => {
    const { runtime, journal, events } = setup();
    const first = await send(runtime, 'acc', 'emit:deposit', { idempotencyKey: 'k1' });
    await send(runtime, 'acc', 'emit:other');
    const again = await send(runtime, 'acc', 'emit:deposit', { idempotencyKey: 'k1' });
    expect(bytesOf(again).equals(bytesOf(first))).toBe(true);
    expect(again.meta.revisionNumber).toBe(1);
    expect(commandsFor('acc')).toBe(2);
    expect(journal.revisions('acc')).toEqual([1n, 2n]);
    // the key rode in the append of its event
    expect(journal.appendCalls[0]!.keys?.map((k) => k.key)).toEqual(['k1']);
    expect(journal.appendCalls[0]!.events).toHaveLength(1);
    expect(events).toEqual([
      ['stored', 1],
      ['replayed', 1],
    ]);
  });

  it('makes duplicates sent while the first runs wait for it, then answers them with its reply', async () => {
    const { runtime, journal } = setup();
    journal.latencyMs = 20;
    const replies = await Promise.all(Array.from({ length: 6 }, () => send(runtime, 'hot', 'slow:30:once', { idempotencyKey: 'same' })));
    expect(commandsFor('hot')).toBe(1);
    for (const reply of replies) expect(bytesOf(reply).equals(bytesOf(replies[0]!))).toBe(true);
    expect(journal.revisions('hot')).toEqual([1n]);
  });

  it('keeps different keys in one batch apart, each recorded once', async () => {
    const { runtime, journal } = setup();
    journal.latencyMs = 20;
    const first = send(runtime, 'batch', 'slow:30:a', { idempotencyKey: 'a' });
    const queued = await Promise.all([
      send(runtime, 'batch', 'emit:b', { idempotencyKey: 'b' }),
      send(runtime, 'batch', 'emit:c', { idempotencyKey: 'c' }),
      send(runtime, 'batch', 'emit:b', { idempotencyKey: 'b' }),
    ]);
    await first;
    expect(queued.map((r) => r.meta.revisionNumber)).toEqual([2, 3, 2]);
    expect(journal.revisions('batch')).toEqual([1n, 2n, 3n]);
    expect(commandsFor('batch')).toBe(3);
  });

  it('records a no-op with its key (an append of the key alone) and answers its retry the same', async () => {
    const { runtime, journal } = setup();
    await send(runtime, 'quiet', 'emit:a');
    const first = await send(runtime, 'quiet', 'noop', { idempotencyKey: 'n' });
    expect(journal.appendCalls.at(-1)).toMatchObject({ expectedRevision: 1n, events: [] });
    expect(journal.appendCalls.at(-1)!.keys?.map((k) => k.key)).toEqual(['n']);
    await send(runtime, 'quiet', 'emit:b');
    const again = await send(runtime, 'quiet', 'noop', { idempotencyKey: 'n' });
    expect(bytesOf(again).equals(bytesOf(first))).toBe(true);
    expect(again.meta.revisionNumber).toBe(1);
    expect(commandsFor('quiet')).toBe(3);
  });

  it("records the handler's refusal and answers its retry with the same code, message and details", async () => {
    const { runtime } = setup();
    const first = (await rejectionOf(send(runtime, 'poor', 'fail', { idempotencyKey: 'f' }))) as HandlerFailedError;
    const again = (await rejectionOf(send(runtime, 'poor', 'fail', { idempotencyKey: 'f' }))) as HandlerFailedError;
    expect(first).toBeInstanceOf(HandlerFailedError);
    expect(again).toBeInstanceOf(HandlerFailedError);
    expect({ code: again.statusCode, message: again.statusMessage }).toEqual({ code: first.statusCode, message: first.statusMessage });
    expect(again.details.map((d) => [d.typeUrl, Buffer.from(d.value).toString('hex')])).toEqual(
      first.details.map((d) => [d.typeUrl, Buffer.from(d.value).toString('hex')]),
    );
    expect(again.details[0]!.typeUrl).toBe(FAILURE_DETAIL.typeUrl);
    expect(commandsFor('poor')).toBe(1);
  });

  it('does not record a failure that says nothing about the command: its retry runs', async () => {
    const { runtime, journal } = setup();
    const error = await rejectionOf(send(runtime, 'late', 'slow:300:a', { idempotencyKey: 't', deadline: Date.now() + 100 }));
    expect(error).toBeInstanceOf(DeadlineExceededError);
    const reply = await send(runtime, 'late', 'emit:a', { idempotencyKey: 't' });
    expect(reply.meta.revisionNumber).toBe(1);
    expect(journal.revisions('late')).toEqual([1n]);
  });

  it('refuses a key reused with another body, doing nothing', async () => {
    const { runtime, journal, events } = setup();
    await send(runtime, 'acc', 'emit:deposit-10', { idempotencyKey: 'k' });
    const appends = journal.appendCalls.length;
    const error = await rejectionOf(send(runtime, 'acc', 'emit:deposit-99', { idempotencyKey: 'k' }));
    expect(error).toBeInstanceOf(IdempotencyKeyReusedError);
    expect(journal.appendCalls).toHaveLength(appends);
    expect(commandsFor('acc')).toBe(1);
    expect(events.at(-1)).toEqual(['reused', 1]);
  });

  it('scopes keys per entity', async () => {
    const { runtime } = setup();
    await send(runtime, 'one', 'emit:a', { idempotencyKey: 'shared' });
    const other = await send(runtime, 'two', 'emit:b', { idempotencyKey: 'shared' });
    expect(textOf(other.state)).toBe('b');
    expect(handler.commands).toHaveLength(2);
  });

  it('answers from the store after a restart (a new runtime on the same journal)', async () => {
    const journal = new InMemoryJournal();
    const first = await send(setup({}, journal).runtime, 'acc', 'emit:a', { idempotencyKey: 'k' });
    const { runtime } = setup({}, journal);
    const again = await send(runtime, 'acc', 'emit:a', { idempotencyKey: 'k' });
    expect(bytesOf(again).equals(bytesOf(first))).toBe(true);
    expect(handler.commands).toHaveLength(1);
    // a new key on the same entity now needs no read: all its keys are known
    const reads = journal.keyReads.length;
    await send(runtime, 'acc', 'emit:b', { idempotencyKey: 'k2' });
    expect(journal.keyReads).toHaveLength(reads);
  });

  it('after an append whose outcome is unknown and that landed, answers the retry with the original reply', async () => {
    const { runtime, journal } = setup();
    await send(runtime, 'acc', 'emit:opened');
    journal.failAfterCommit = new CommitOutcomeUnknownError('connection lost after COMMIT');
    const error = await rejectionOf(send(runtime, 'acc', 'emit:deposit', { idempotencyKey: 'dep' }));
    expect(error).toBeInstanceOf(CommitOutcomeUnknownError);
    const retry = await send(runtime, 'acc', 'emit:deposit', { idempotencyKey: 'dep' });
    expect(retry.meta.revisionNumber).toBe(2);
    expect(textOf(retry.state)).toBe('opened,deposit');
    expect(journal.revisions('acc')).toEqual([1n, 2n]);
    expect(commandsFor('acc')).toBe(2);
  });

  it('after an append whose outcome is unknown and that did not land, runs the retry', async () => {
    const { runtime, journal } = setup();
    journal.failNextAppend = new CommitOutcomeUnknownError('connection lost before COMMIT');
    await expect(send(runtime, 'acc', 'emit:deposit', { idempotencyKey: 'dep' })).rejects.toBeInstanceOf(CommitOutcomeUnknownError);
    const retry = await send(runtime, 'acc', 'emit:deposit', { idempotencyKey: 'dep' });
    expect(retry.meta.revisionNumber).toBe(1);
    expect(journal.revisions('acc')).toEqual([1n]);
  });

  it('a duplicate queued behind a command whose append outcome is unknown finds its key after the reload', async () => {
    const { runtime, journal } = setup();
    journal.latencyMs = 20;
    journal.failAfterCommit = new CommitOutcomeUnknownError('connection lost after COMMIT');
    const [first, duplicate] = await Promise.allSettled([
      send(runtime, 'acc', 'slow:20:deposit', { idempotencyKey: 'dep' }),
      send(runtime, 'acc', 'slow:20:deposit', { idempotencyKey: 'dep' }),
    ]);
    expect(first.status).toBe('rejected');
    expect(duplicate).toMatchObject({ status: 'fulfilled', value: { meta: { revisionNumber: 1 } } });
    expect(commandsFor('acc')).toBe(1);
    expect(journal.revisions('acc')).toEqual([1n]);
  });

  it('looks keys up in the store when the entity has more than it keeps in memory', async () => {
    const journal = new InMemoryJournal();
    const { runtime } = setup({ maxKeysPerEntity: 3 }, journal);
    const replies: EntityState[] = [];
    for (let i = 0; i < 6; i++) replies.push(await send(runtime, 'busy', `emit:${i}`, { idempotencyKey: `k${i}` }));
    const reads = journal.keyReads.length;
    const again = await send(runtime, 'busy', 'emit:0', { idempotencyKey: 'k0' });
    expect(bytesOf(again).equals(bytesOf(replies[0]!))).toBe(true);
    expect(journal.keyReads.slice(reads)).toEqual([{ entityId: 'busy', keys: ['k0'] }]);
    // after a restart too: the first read finds more keys than are kept, so misses ask the store
    const restarted = setup({ maxKeysPerEntity: 3 }, journal).runtime;
    const fresh = await send(restarted, 'busy', 'emit:new', { idempotencyKey: 'k-new' });
    expect(fresh.meta.revisionNumber).toBe(7);
    const replay = await send(restarted, 'busy', 'emit:1', { idempotencyKey: 'k1' });
    expect(bytesOf(replay).equals(bytesOf(replies[1]!))).toBe(true);
    expect(commandsFor('busy')).toBe(7);
  });

  it('forgets keys older than the retention window: the command runs again', async () => {
    let now = Date.now();
    const { runtime, journal } = setup({ idempotencyRetentionMs: 60_000, clock: { now: () => new Date(now) } });
    await send(runtime, 'acc', 'emit:a', { idempotencyKey: 'k' });
    now += 61_000;
    const again = await send(runtime, 'acc', 'emit:a', { idempotencyKey: 'k' });
    expect(again.meta.revisionNumber).toBe(2);
    expect(journal.revisions('acc')).toEqual([1n, 2n]);
  });

  it('refuses an empty key and one over 128 bytes', async () => {
    const { runtime } = setup();
    await expect(send(runtime, 'acc', 'emit:a', { idempotencyKey: '' })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(send(runtime, 'acc', 'emit:a', { idempotencyKey: 'é'.repeat(65) })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(send(runtime, 'acc', 'emit:a', { idempotencyKey: 'x'.repeat(128) })).resolves.toBeDefined();
  });
});

describe('expected revision', () => {
  it('runs the command at the expected revision and refuses it at another, without calling the handler', async () => {
    const { runtime, journal } = setup();
    expect((await send(runtime, 'acc', 'emit:a', { expectedRevision: 0n })).meta.revisionNumber).toBe(1);
    expect((await send(runtime, 'acc', 'emit:b', { expectedRevision: 1n })).meta.revisionNumber).toBe(2);
    const error = (await rejectionOf(send(runtime, 'acc', 'emit:c', { expectedRevision: 1n }))) as RevisionMismatchError;
    expect(error).toBeInstanceOf(RevisionMismatchError);
    expect({ expected: error.expected, actual: error.actual }).toEqual({ expected: 1n, actual: 2n });
    expect(error.message).toContain('revision 2');
    expect(commandsFor('acc')).toBe(2);
    expect(journal.revisions('acc')).toEqual([1n, 2n]);
  });

  it('checks when the command gets its turn, after the commands queued before it', async () => {
    const { runtime, journal } = setup();
    journal.latencyMs = 10;
    const outcomes = await Promise.allSettled([
      send(runtime, 'new', 'slow:20:created', { expectedRevision: 0n }),
      send(runtime, 'new', 'emit:created-again', { expectedRevision: 0n }),
      send(runtime, 'new', 'emit:next', { expectedRevision: 1n }),
    ]);
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((outcomes[1] as PromiseRejectedResult).reason).toMatchObject({ expected: 0n, actual: 1n });
    expect(journal.revisions('new')).toEqual([1n, 2n]);
  });

  it('is checked after the key: a retry of a command that succeeded gets its reply, not a mismatch', async () => {
    const { runtime } = setup();
    const first = await send(runtime, 'acc', 'emit:a', { expectedRevision: 0n, idempotencyKey: 'create' });
    const again = await send(runtime, 'acc', 'emit:a', { expectedRevision: 0n, idempotencyKey: 'create' });
    expect(bytesOf(again).equals(bytesOf(first))).toBe(true);
  });

  it('records a mismatch with the key: its retry gets the same error', async () => {
    const { runtime } = setup();
    await send(runtime, 'acc', 'emit:a');
    const first = (await rejectionOf(send(runtime, 'acc', 'emit:b', { expectedRevision: 5n, idempotencyKey: 'm' }))) as RevisionMismatchError;
    await send(runtime, 'acc', 'emit:c');
    const again = (await rejectionOf(send(runtime, 'acc', 'emit:b', { expectedRevision: 5n, idempotencyKey: 'm' }))) as RevisionMismatchError;
    expect(again).toBeInstanceOf(RevisionMismatchError);
    expect({ expected: again.expected, actual: again.actual, message: again.message }).toEqual({
      expected: first.expected,
      actual: first.actual,
      message: first.message,
    });
    expect(again.actual).toBe(1n);
  });
});

import { setTimeout as sleep } from 'node:timers/promises';
import { create, fromBinary } from '@bufbuild/protobuf';
import { type Any } from '@bufbuild/protobuf/wkt';
import {
  DeadlineExceededError,
  FencedError,
  HandlerFailedError,
  HandlerUnavailableError,
  InvalidArgumentError,
  JournalConflictError,
  NotFoundError,
  ShuttingDownError,
  StoreError,
  CommitOutcomeUnknownError,
  type Logger,
} from '@chiefofstate/core';
import { EventWrapperSchema, HeaderSchema, StateWrapperSchema } from '@chiefofstate/protocol';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createEntityRuntime, type EntityRuntime, type EntityRuntimeOptions } from './entity-runtime.js';
import { InMemoryJournal, InMemorySnapshots, countingReads } from './test-support/in-memory-stores.js';
import { FAILURE_DETAIL, str, textOf, useTestHandler } from './test-support/test-handler.js';

const handler = useTestHandler();
const runtimes: EntityRuntime[] = [];
afterEach(async () => {
  await Promise.all(runtimes.splice(0).map((r) => r.close()));
  handler.reset();
});

interface Setup {
  runtime: EntityRuntime;
  journal: InMemoryJournal;
  snapshots: InMemorySnapshots;
  logs: { level: string; message: string; fields?: Record<string, unknown> }[];
}

function setup(options: Partial<EntityRuntimeOptions> = {}, journal = new InMemoryJournal()): Setup {
  const snapshots = (options.snapshots as InMemorySnapshots | undefined) ?? new InMemorySnapshots();
  const logs: Setup['logs'] = [];
  const at = (level: string) => (fields: object | string, message?: string) =>
    logs.push({ level, message: message ?? '', fields: fields as Record<string, unknown> });
  const logger: Logger = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
  const runtime = createEntityRuntime({ journal, snapshots, handler: handler.client(), logger, ...options });
  runtimes.push(runtime);
  return { runtime, journal, snapshots, logs };
}

function send(runtime: EntityRuntime, entityId: string, command: string, extra: object = {}) {
  return runtime.processCommand({ entityId, command: str(command), ...extra });
}

function wrappers(journal: InMemoryJournal, entityId: string) {
  return (journal.entities.get(entityId) ?? []).map((e) => fromBinary(EventWrapperSchema, e.payload));
}

const readCountingJournal = () => countingReads(new InMemoryJournal());

async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

describe('entity id (behaviour 1)', () => {
  it('rejects an empty id with `empty entity ID`, calling nothing', async () => {
    const { runtime, journal } = setup();
    const error = await rejectionOf(send(runtime, '', 'emit:a'));
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect((error as Error).message).toBe('empty entity ID');
    await expect(runtime.getState('')).rejects.toThrow('empty entity ID');
    expect(handler.commands).toHaveLength(0);
    expect(journal.appendCalls).toHaveLength(0);
    expect(runtime.stats().active).toBe(0);
  });

  it('rejects ids over 255 characters and accepts 255', async () => {
    const { runtime } = setup();
    await expect(send(runtime, 'x'.repeat(256), 'emit:a')).rejects.toThrow(/too long/);
    await expect(send(runtime, 'é'.repeat(255), 'emit:a')).resolves.toMatchObject({ meta: { revisionNumber: 1 } });
    expect(handler.commands).toHaveLength(1);
  });
});

describe('serial per entity, parallel across entities (behaviour 2)', () => {
  it('processes 200 concurrent commands to one entity one at a time, in arrival order', async () => {
    const { runtime, journal } = setup();
    journal.latencyMs = 1;
    const replies = await Promise.all(
      Array.from({ length: 200 }, (_, i) => send(runtime, 'hot', `emit:${i}`)),
    );
    expect(replies.map((r) => r.meta.revisionNumber)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
    expect(journal.revisions('hot')).toEqual(Array.from({ length: 200 }, (_, i) => BigInt(i + 1)));
    expect(handler.concurrency.perEntityMax.get('hot')).toBe(1);
    // each command saw the state left by the one before it: arrival order is kept
    expect(textOf(replies[199]!.state)).toBe(Array.from({ length: 200 }, (_, i) => i).join(','));
  });

  it('runs different entities in parallel', async () => {
    const { runtime } = setup();
    const started = performance.now();
    await Promise.all(Array.from({ length: 20 }, (_, i) => send(runtime, `e${i}`, 'slow:150:a')));
    const elapsed = performance.now() - started;
    expect(handler.concurrency.max).toBeGreaterThan(10);
    expect(elapsed).toBeLessThan(20 * 150 / 2);
  });
});

describe('commands queued on one entity share one append', () => {
  it('handles them one at a time and persists their events in one append, each reply its own', async () => {
    const { runtime, journal } = setup();
    const first = send(runtime, 'q', 'slow:100:a');
    const queued = ['emit:b', 'emit:c,d', 'noop', 'emit:e'].map((c) => send(runtime, 'q', c));
    const replies = await Promise.all([first, ...queued]);
    expect(replies.map((r) => [textOf(r.state), r.meta.revisionNumber])).toEqual([
      ['a', 1],
      ['a,b', 2],
      ['a,b,c,d', 4],
      ['a,b,c,d', 4],
      ['a,b,c,d,e', 5],
    ]);
    expect(journal.appendCalls.map((a) => [a.expectedRevision, a.events.length])).toEqual([
      [0n, 1],
      [1n, 4],
    ]);
    expect(wrappers(journal, 'q').map((w) => [textOf(w.resultingState), w.meta?.revisionNumber])).toEqual([
      ['a', 1],
      ['a,b', 2],
      ['a,b,c', 3],
      ['a,b,c,d', 4],
      ['a,b,c,d,e', 5],
    ]);
    expect(handler.concurrency.perEntityMax.get('q')).toBe(1);
  });

  it('appends at most maxCommandsPerAppend commands at once', async () => {
    const { runtime, journal } = setup({ maxCommandsPerAppend: 2 });
    const replies = await Promise.all(['slow:50:a', 'emit:b', 'emit:c', 'emit:d', 'emit:e'].map((c) => send(runtime, 'm', c)));
    expect(replies.map((r) => r.meta.revisionNumber)).toEqual([1, 2, 3, 4, 5]);
    expect(journal.appendCalls.map((a) => a.events.length)).toEqual([1, 2, 2]);
  });

  it('fails a command the handler refused only once the events before it are stored, and keeps the rest', async () => {
    const { runtime, journal } = setup();
    journal.latencyMs = 50;
    const first = send(runtime, 'f', 'slow:50:a');
    const b = send(runtime, 'f', 'emit:b');
    const refused = rejectionOf(send(runtime, 'f', 'fail'));
    const c = send(runtime, 'f', 'emit:c');
    let refusedAt = 0;
    void refused.then(() => (refusedAt = journal.appendCalls.length));
    await first;
    expect(await refused).toBeInstanceOf(HandlerFailedError);
    expect(textOf((await b).state)).toBe('a,b');
    expect(textOf((await c).state)).toBe('a,b,c');
    // the refusal went out after the append that stored b (and c) resolved
    expect(refusedAt).toBe(2);
    expect(journal.revisions('f')).toEqual([1n, 2n, 3n]);
  });

  it('fails a command whose deadline passed before the append, and runs the later ones again without it', async () => {
    // The clock jumps a minute ahead once the third HandleEvent (the last queued command's) answered.
    const base = Date.now();
    const clock = { now: () => new Date(handler.events.length >= 3 ? base + 60_000 : Date.now()) };
    const { runtime, journal } = setup({ clock });
    const first = send(runtime, 'd', 'slow:100:a');
    const late = rejectionOf(send(runtime, 'd', 'emit:x', { deadline: base + 30_000 }));
    const after = send(runtime, 'd', 'emit:y');
    await first;
    expect(await late).toBeInstanceOf(DeadlineExceededError);
    const reply = await after;
    expect(textOf(reply.state)).toBe('a,y');
    expect(reply.meta.revisionNumber).toBe(2);
    expect(journal.revisions('d')).toEqual([1n, 2n]);
    expect(wrappers(journal, 'd').map((w) => textOf(w.event))).toEqual(['a', 'y']);
    // y was handled on x's state first, then again on the stored one
    const ys = handler.commands.filter((c) => textOf(c.request.command) === 'emit:y');
    expect(ys.map((c) => textOf(c.request.priorState))).toEqual(['a,x', 'a']);
  });

  it('when the shared append fails, fails the commands with events and runs the others again', async () => {
    const journal = new InMemoryJournal();
    const append = journal.append.bind(journal);
    let calls = 0;
    journal.append = (request) => (++calls === 2 ? Promise.reject(new StoreError('connection lost')) : append(request));
    const { runtime } = setup({}, journal);
    const first = send(runtime, 's', 'slow:100:a');
    const b = rejectionOf(send(runtime, 's', 'emit:b'));
    const noop = send(runtime, 's', 'noop');
    const c = rejectionOf(send(runtime, 's', 'emit:c'));
    await first;
    expect(await b).toBeInstanceOf(StoreError);
    expect(await c).toBeInstanceOf(StoreError);
    // noop replied with what is stored, not with the state b and c would have made
    expect(textOf((await noop).state)).toBe('a');
    const noops = handler.commands.filter((cmd) => textOf(cmd.request.command) === 'noop');
    expect(noops.map((cmd) => textOf(cmd.request.priorState))).toEqual(['a,b', 'a']);
    expect(journal.revisions('s')).toEqual([1n]);
    expect(textOf((await send(runtime, 's', 'emit:d')).state)).toBe('a,d');
  });

  it('never retries an append whose outcome is unknown: fails its commands, drops the cached state, reloads', async () => {
    const journal = new InMemoryJournal();
    const append = journal.append.bind(journal);
    let calls = 0;
    // the second append commits, but its answer is lost
    journal.append = async (request) => {
      const result = await append(request);
      if (++calls === 2) throw new CommitOutcomeUnknownError('connection lost after the append was sent');
      return result;
    };
    const { runtime, logs } = setup({}, journal);
    await send(runtime, 'u', 'emit:a');
    expect(await rejectionOf(send(runtime, 'u', 'emit:b'))).toBeInstanceOf(CommitOutcomeUnknownError);
    expect(logs).toContainEqual(expect.objectContaining({ level: 'warn', message: expect.stringMatching(/commit outcome unknown/) }));
    // the next command runs on what the store holds (b persisted), not on the cached 'a'
    const reply = await send(runtime, 'u', 'emit:c');
    expect(textOf(reply.state)).toBe('a,b,c');
    expect(reply.meta.revisionNumber).toBe(3);
    expect(handler.commands.filter((cmd) => textOf(cmd.request.command) === 'emit:b')).toHaveLength(1);
  });

  it('gives the append the latest deadline of the commands it persists', async () => {
    const journal = new InMemoryJournal();
    const append = journal.append.bind(journal);
    const deadlines: Array<number | undefined> = [];
    journal.append = (request) => {
      deadlines.push(request.deadline);
      return append(request);
    };
    const { runtime } = setup({}, journal);
    const now = Date.now();
    const first = send(runtime, 'dl', 'slow:50:a', { deadline: now + 10_000 });
    // queued behind the first: b and c are persisted together
    const b = send(runtime, 'dl', 'emit:b', { deadline: now + 20_000 });
    const c = send(runtime, 'dl', 'emit:c', { deadline: now + 15_000 });
    await Promise.all([first, b, c]);
    expect(deadlines).toEqual([now + 10_000, now + 20_000]);
    await send(runtime, 'dl', 'emit:d');
    expect(deadlines[2]).toBeUndefined();
  });

  it('bounds the reads of a load by the latest deadline of the commands waiting for it, and GetState by its own', async () => {
    const journal = new InMemoryJournal();
    const snapshots = new InMemorySnapshots();
    const reads: Array<[string, number | undefined]> = [];
    const readLatest = journal.readLatest.bind(journal);
    journal.readLatest = (entityId, options) => {
      reads.push(['journal', options?.deadline]);
      return readLatest(entityId, options);
    };
    const loadLatest = snapshots.loadLatest.bind(snapshots);
    snapshots.loadLatest = (entityId, options) => {
      reads.push(['snapshot', options?.deadline]);
      return loadLatest(entityId, options);
    };
    const { runtime } = setup({ snapshots, retain: () => false }, journal);
    const now = Date.now();
    // a new entity: the journal has nothing, so the snapshot is read too; b and c queue behind a
    // and are loaded for together (not retained here, so every batch loads)
    const first = send(runtime, 'rd', 'slow:50:a', { deadline: now + 10_000 });
    const rest = [send(runtime, 'rd', 'emit:b', { deadline: now + 20_000 }), send(runtime, 'rd', 'emit:c', { deadline: now + 15_000 })];
    await Promise.all([first, ...rest]);
    await runtime.getState('rd', { deadline: now + 5_000 });
    await send(runtime, 'rd', 'emit:d');
    expect(reads).toEqual([
      ['journal', now + 10_000],
      ['snapshot', now + 10_000],
      ['journal', now + 20_000],
      ['journal', now + 5_000],
      ['journal', undefined],
    ]);
  });

  it('on a conflict, reloads and runs every command of the batch again', async () => {
    const journal = new InMemoryJournal();
    const a = setup({}, journal);
    const b = setup({}, journal);
    // Runtime b writes the entity just before a appends its batch of two commands.
    const append = journal.append.bind(journal);
    let interfered = false;
    journal.append = async (request) => {
      if (request.events.length === 2 && !interfered) {
        interfered = true;
        await send(b.runtime, 'k', 'emit:b1');
      }
      return append(request);
    };
    await send(a.runtime, 'k', 'emit:a1');
    await sleep(10); // a's mailbox is idle: a0 runs on its own, a2 and a3 queue behind it
    const replies = await Promise.all(['slow:50:a0', 'emit:a2', 'emit:a3'].map((c) => send(a.runtime, 'k', c)));
    expect(replies.map((r) => [textOf(r.state), r.meta.revisionNumber])).toEqual([
      ['a1,a0', 2],
      ['a1,a0,b1,a2', 4],
      ['a1,a0,b1,a2,a3', 5],
    ]);
    expect(journal.revisions('k')).toEqual([1n, 2n, 3n, 4n, 5n]);
    const a2 = handler.commands.filter((c) => textOf(c.request.command) === 'emit:a2');
    expect(a2.map((c) => textOf(c.request.priorState))).toEqual(['a1,a0', 'a1,a0,b1']);
  });
});

describe('command handling (behaviours 3-7)', () => {
  it('gives a never-seen entity the Empty state and meta {entity_id} at revision 0', async () => {
    const { runtime } = setup();
    await send(runtime, 'new-1', 'emit:a');
    const first = handler.commands[0]!.request;
    expect(first.priorState?.typeUrl).toBe('type.googleapis.com/google.protobuf.Empty');
    expect(first.priorState?.value).toHaveLength(0);
    expect(first.priorEventMeta?.entityId).toBe('new-1');
    expect(first.priorEventMeta?.revisionNumber).toBe(0);
    expect(first.priorEventMeta?.revisionDate).toBeUndefined();
    expect(textOf(first.command)).toBe('emit:a');
  });

  it('sends the command, the current state and the latest event meta to HandleCommand', async () => {
    const { runtime } = setup();
    const one = await send(runtime, 'acc', 'emit:a');
    await send(runtime, 'acc', 'emit:b');
    const second = handler.commands[1]!.request;
    expect(textOf(second.priorState)).toBe('a');
    expect(second.priorEventMeta?.revisionNumber).toBe(1);
    expect(second.priorEventMeta?.entityId).toBe('acc');
    expect(second.priorEventMeta?.revisionDate).toEqual(one.meta.revisionDate);
  });

  it('uses the deprecated `event` field when `events` is empty', async () => {
    const { runtime, journal } = setup();
    const reply = await send(runtime, 'legacy', 'legacy:x');
    expect(textOf(reply.state)).toBe('x');
    expect(reply.meta.revisionNumber).toBe(1);
    expect(wrappers(journal, 'legacy').map((w) => textOf(w.event))).toEqual(['x']);
  });

  it('with no events persists nothing, calls no HandleEvent and replies the current state', async () => {
    const { runtime, journal } = setup();
    const fresh = await send(runtime, 'quiet', 'noop');
    expect(fresh.state.typeUrl).toBe('type.googleapis.com/google.protobuf.Empty');
    expect(fresh.meta.entityId).toBe('quiet');
    expect(fresh.meta.revisionNumber).toBe(0);
    const after = await send(runtime, 'quiet', 'emit:a');
    const again = await send(runtime, 'quiet', 'noop');
    expect(journal.appendCalls).toHaveLength(1);
    expect(handler.events).toHaveLength(1);
    expect(again).toEqual(after);
  });

  it('chains several events through HandleEvent and appends them atomically in one call', async () => {
    const { runtime, journal } = setup();
    await send(runtime, 'multi', 'emit:a');
    handler.events.length = 0;
    const reply = await send(runtime, 'multi', 'emit:b,c,d', {
      persistedHeaders: [create(HeaderSchema, { key: 'x-user', value: { case: 'stringValue', value: 'ann' } })],
    });
    expect(handler.events.map((e) => textOf(e.request.priorState))).toEqual(['a', 'a,b', 'a,b,c']);
    expect(handler.events.map((e) => e.request.eventMeta?.revisionNumber)).toEqual([2, 3, 4]);
    expect(handler.events.map((e) => textOf(e.request.event))).toEqual(['b', 'c', 'd']);
    expect(journal.appendCalls).toHaveLength(2);
    expect(journal.appendCalls[1]!.expectedRevision).toBe(1n);
    expect(journal.appendCalls[1]!.events).toHaveLength(3);
    const stored = wrappers(journal, 'multi');
    expect(stored.map((w) => [textOf(w.event), textOf(w.resultingState), w.meta?.revisionNumber])).toEqual([
      ['a', 'a', 1],
      ['b', 'a,b', 2],
      ['c', 'a,b,c', 3],
      ['d', 'a,b,c,d', 4],
    ]);
    for (const w of stored.slice(1)) {
      expect(w.meta?.entityId).toBe('multi');
      expect(w.meta?.revisionDate).toBeDefined();
      expect(w.meta?.headers.map((h) => [h.key, h.value.value])).toEqual([['x-user', 'ann']]);
    }
    expect(textOf(reply.state)).toBe('a,b,c,d');
    expect(reply.meta.revisionNumber).toBe(4);
    expect(reply.meta).toEqual(stored[3]!.meta);
  });

  it('stamps revision_date from the clock', async () => {
    const at = new Date('2030-01-02T03:04:05.678Z');
    const { runtime } = setup({ clock: { now: () => at } });
    const reply = await send(runtime, 'dated', 'emit:a');
    expect(reply.meta.revisionDate?.seconds).toBe(BigInt(Math.floor(at.getTime() / 1000)));
    expect(reply.meta.revisionDate?.nanos).toBe(678_000_000);
  });
});

describe('invalid handler output (behaviours 8-9)', () => {
  it('rejects an unset resulting state and persists nothing of the command', async () => {
    const { runtime, journal } = setup();
    const error = await rejectionOf(send(runtime, 'e', 'emit:a,!empty'));
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect((error as Error).message).toBe('event handler replied with empty state');
    expect(journal.appendCalls).toHaveLength(0);
    // the entity is unharmed
    await expect(send(runtime, 'e', 'emit:b')).resolves.toMatchObject({ meta: { revisionNumber: 1 } });
  });

  it('validates event and state types when configured', async () => {
    const { runtime, journal } = setup({
      allowedEventTypes: ['google.protobuf.StringValue'],
      allowedStateTypes: ['google.protobuf.StringValue'],
    });
    await expect(send(runtime, 'v', 'emit:a')).resolves.toBeDefined();
    const badEvent = await rejectionOf(send(runtime, 'v', 'badtype'));
    expect(badEvent).toBeInstanceOf(InvalidArgumentError);
    expect((badEvent as Error).message).toBe('invalid event: type.googleapis.com/bank.v1.Unknown');
    const badState = await rejectionOf(send(runtime, 'v', 'emit:b,!int'));
    expect(badState).toBeInstanceOf(InvalidArgumentError);
    expect((badState as Error).message).toBe('invalid state: type.googleapis.com/google.protobuf.Int32Value');
    expect(journal.appendCalls).toHaveLength(1);
  });

  it('does not validate types when not configured', async () => {
    const { runtime } = setup();
    await expect(send(runtime, 'v', 'badtype')).resolves.toBeDefined();
  });
});

describe('persistence and replies (behaviour 10)', () => {
  it('replies only after the append resolved', async () => {
    const { runtime, journal } = setup();
    journal.latencyMs = 150;
    const started = performance.now();
    const reply = await send(runtime, 'slowdb', 'emit:a');
    expect(performance.now() - started).toBeGreaterThanOrEqual(140);
    expect(journal.revisions('slowdb')).toEqual([1n]);
    expect(reply.meta.revisionNumber).toBe(1);
  });

  it('fails the command when the append fails, and reloads the entity before the next one', async () => {
    const { runtime, journal } = setup();
    await send(runtime, 'flaky', 'emit:a');
    journal.failNextAppend = new StoreError('connection lost');
    await expect(send(runtime, 'flaky', 'emit:b')).rejects.toBeInstanceOf(StoreError);
    const reply = await send(runtime, 'flaky', 'emit:c');
    expect(textOf(reply.state)).toBe('a,c');
    expect(reply.meta.revisionNumber).toBe(2);
  });
});

describe('handler failures (behaviours 11-12)', () => {
  it('passes the handler error through with code, message and details', async () => {
    const { runtime, journal } = setup();
    const error = (await rejectionOf(send(runtime, 'e', 'fail'))) as HandlerFailedError;
    expect(error).toBeInstanceOf(HandlerFailedError);
    expect(error.statusCode).toBe(9);
    expect(error.statusMessage).toBe('insufficient funds');
    expect(error.details).toHaveLength(1);
    expect(error.details[0]!.typeUrl).toBe(FAILURE_DETAIL.typeUrl);
    expect(textOf({ typeUrl: error.details[0]!.typeUrl, value: error.details[0]!.value } as Any)).toBe(
      FAILURE_DETAIL.text,
    );
    expect(journal.appendCalls).toHaveLength(0);
  });

  it('reports an unreachable handler as HandlerUnavailableError', async () => {
    const { runtime } = setup({ handler: handler.client({ port: 1 }) });
    await expect(send(runtime, 'e', 'emit:a')).rejects.toBeInstanceOf(HandlerUnavailableError);
  });

  it('reports a handler slower than the call timeout as DeadlineExceededError', async () => {
    const { runtime, journal } = setup({ handler: handler.client({ timeoutMs: 100 }) });
    await expect(send(runtime, 'e', 'slow:400:a')).rejects.toBeInstanceOf(DeadlineExceededError);
    expect(journal.appendCalls).toHaveLength(0);
  });

  it('gives handler calls only the caller’s remaining time', async () => {
    const { runtime, journal } = setup();
    const started = performance.now();
    await expect(send(runtime, 'e', 'slow:1000:a', { deadline: Date.now() + 150 })).rejects.toBeInstanceOf(
      DeadlineExceededError,
    );
    expect(performance.now() - started).toBeLessThan(800);
    const timeout = handler.commands[0]!.headers.get('grpc-timeout');
    expect(Number.parseInt(timeout!, 10)).toBeLessThanOrEqual(150);
    expect(journal.appendCalls).toHaveLength(0);
  });

  it('does not append once the caller’s deadline passed, even when the handlers answered', async () => {
    // The clock jumps past the deadline as soon as HandleEvent has answered.
    const base = Date.now();
    const clock = { now: () => new Date(handler.events.length > 0 ? base + 60_000 : Date.now()) };
    const { runtime, journal } = setup({ clock });
    const error = await rejectionOf(send(runtime, 'late', 'emit:a', { deadline: base + 30_000 }));
    expect(error).toBeInstanceOf(DeadlineExceededError);
    expect(handler.events).toHaveLength(1);
    expect(journal.appendCalls).toHaveLength(0);
  });

  it('applies the command timeout from arrival, queueing included', async () => {
    const { runtime, journal } = setup({ commandTimeoutMs: 200 });
    const first = send(runtime, 'q', 'slow:300:a');
    const second = send(runtime, 'q', 'emit:b');
    await expect(first).rejects.toBeInstanceOf(DeadlineExceededError);
    await expect(second).rejects.toBeInstanceOf(DeadlineExceededError);
    expect(handler.commands).toHaveLength(1);
    expect(journal.appendCalls).toHaveLength(0);
  });

  it('abandons a command whose caller cancelled before it ran', async () => {
    const { runtime, journal } = setup();
    const controller = new AbortController();
    const first = send(runtime, 'c', 'slow:100:a');
    const reason = new Error('caller went away');
    const second = send(runtime, 'c', 'emit:b', { signal: controller.signal });
    controller.abort(reason);
    await first;
    await expect(second).rejects.toBe(reason);
    expect(handler.commands).toHaveLength(1);
    expect(journal.revisions('c')).toEqual([1n]);
  });
});

describe('headers', () => {
  it('sends propagated headers (and traceparent) as metadata on HandleCommand and HandleEvent', async () => {
    const { runtime } = setup();
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    await send(runtime, 'h', 'emit:a,b', {
      propagatedHeaders: { 'x-tenant': 'acme', traceparent, tracestate: 'k=v' },
    });
    for (const call of [...handler.commands, ...handler.events]) {
      expect(call.headers.get('x-tenant')).toBe('acme');
      expect(call.headers.get('traceparent')).toBe(traceparent);
      expect(call.headers.get('tracestate')).toBe('k=v');
    }
    expect(handler.events).toHaveLength(2);
  });

  it('stores persisted headers, string and bytes, in every event meta', async () => {
    const { runtime, journal } = setup();
    const headers = [
      create(HeaderSchema, { key: 'x-user', value: { case: 'stringValue', value: 'ann' } }),
      create(HeaderSchema, { key: 'x-sig-bin', value: { case: 'bytesValue', value: new Uint8Array([0, 255]) } }),
    ];
    await send(runtime, 'p', 'emit:a,b', { persistedHeaders: headers });
    for (const w of wrappers(journal, 'p')) expect(w.meta?.headers).toEqual(headers);
    expect(handler.events[0]!.request.eventMeta?.headers).toEqual(headers);
  });
});

describe('state cache and recovery', () => {
  it('keeps the state in memory between commands', async () => {
    const { journal, reads } = readCountingJournal();
    const { runtime } = setup({}, journal);
    await send(runtime, 'c', 'emit:a');
    await send(runtime, 'c', 'emit:b');
    await send(runtime, 'c', 'emit:c');
    expect(reads).toEqual(['c']);
  });

  it('recovers an entity from its newest event in a new runtime', async () => {
    const journal = new InMemoryJournal();
    const first = setup({}, journal);
    await send(first.runtime, 'r', 'emit:a,b');
    await first.runtime.close();
    const second = setup({}, journal);
    handler.commands.length = 0;
    const reply = await send(second.runtime, 'r', 'emit:c');
    expect(textOf(handler.commands[0]!.request.priorState)).toBe('a,b');
    expect(handler.commands[0]!.request.priorEventMeta?.revisionNumber).toBe(2);
    expect(reply.meta.revisionNumber).toBe(3);
    expect(textOf(reply.state)).toBe('a,b,c');
  });

  it('recovers from the newest snapshot when the journal has no event', async () => {
    const journal = new InMemoryJournal();
    const snapshots = new InMemorySnapshots();
    const first = setup({ snapshots, snapshotPolicy: { enabled: true, frequency: 2 } }, journal);
    await send(first.runtime, 's', 'emit:a,b');
    await first.runtime.close();
    expect(snapshots.saved).toHaveLength(1);
    journal.entities.delete('s');
    const second = setup({ snapshots }, journal);
    const state = await second.runtime.getState('s');
    expect(textOf(state.state)).toBe('a,b');
    const reply = await send(second.runtime, 's', 'emit:c');
    expect(reply.meta.revisionNumber).toBe(3);
    expect(journal.appendCalls.at(-1)!.expectedRevision).toBe(2n);
  });
});

describe('snapshots', () => {
  it('saves a StateWrapper snapshot whenever a multiple of the frequency is crossed', async () => {
    const { runtime, snapshots } = setup({ snapshotPolicy: { enabled: true, frequency: 3 } });
    await send(runtime, 's', 'emit:a'); // 1
    await send(runtime, 's', 'emit:b,c'); // 3
    await send(runtime, 's', 'emit:d,e'); // 5
    await send(runtime, 's', 'emit:f,g,h,i'); // 9: crosses 6 and 9, one snapshot at 9
    await send(runtime, 's', 'noop');
    await runtime.close();
    expect(snapshots.saved.map((s) => s.revision)).toEqual([3n, 9n]);
    const last = fromBinary(StateWrapperSchema, snapshots.saved[1]!.payload);
    expect(textOf(last.state)).toBe('a,b,c,d,e,f,g,h,i');
    expect(last.meta?.revisionNumber).toBe(9);
    expect(last.meta?.entityId).toBe('s');
  });

  it('takes no snapshot when disabled', async () => {
    const { runtime, snapshots } = setup({ snapshotPolicy: { enabled: false, frequency: 1 } });
    await send(runtime, 's', 'emit:a,b,c');
    await runtime.close();
    expect(snapshots.saved).toHaveLength(0);
  });

  it('deletes events before the oldest retained snapshot with logical deletion', async () => {
    const snapshots = new InMemorySnapshots(2);
    const { runtime, journal } = setup({
      snapshots,
      snapshotPolicy: { enabled: true, frequency: 2 },
      logicalDeletion: true,
    });
    for (const e of ['a', 'b', 'c', 'd', 'e', 'f', 'g']) await send(runtime, 'd', `emit:${e}`);
    await runtime.close();
    // snapshots at 2, 4, 6; retained 4 and 6; events before 4 deleted
    expect(journal.revisions('d')).toEqual([4n, 5n, 6n, 7n]);
  });

  it('logs a failing snapshot and still replies', async () => {
    const snapshots = new InMemorySnapshots();
    snapshots.failSaves = true;
    const { runtime, logs } = setup({ snapshots, snapshotPolicy: { enabled: true, frequency: 1 } });
    await expect(send(runtime, 'f', 'emit:a')).resolves.toMatchObject({ meta: { revisionNumber: 1 } });
    await runtime.close();
    expect(logs.filter((l) => l.level === 'error').map((l) => l.message)).toEqual(['snapshot failed']);
  });

  it('does not delay the reply for the snapshot save', async () => {
    const snapshots = new InMemorySnapshots();
    const save = snapshots.save.bind(snapshots);
    snapshots.save = async (s) => {
      await sleep(300);
      return save(s);
    };
    const { runtime } = setup({ snapshots, snapshotPolicy: { enabled: true, frequency: 1 } });
    const started = performance.now();
    await send(runtime, 'f', 'emit:a');
    expect(performance.now() - started).toBeLessThan(250);
    expect(snapshots.saved).toHaveLength(0);
    await runtime.close(); // waits for the save
    expect(snapshots.saved).toHaveLength(1);
  });
});

describe('conflicts', () => {
  it('reloads and re-runs the command when another runtime wrote the entity', async () => {
    const journal = new InMemoryJournal();
    const a = setup({}, journal);
    const b = setup({}, journal);
    await send(a.runtime, 'shared', 'emit:a1');
    await send(b.runtime, 'shared', 'emit:b1');
    const reply = await send(a.runtime, 'shared', 'emit:a2');
    expect(reply.meta.revisionNumber).toBe(3);
    expect(textOf(reply.state)).toBe('a1,b1,a2');
    expect(journal.revisions('shared')).toEqual([1n, 2n, 3n]);
    // the retry asked the handler again, with the state b wrote
    const aCommands = handler.commands.filter((c) => textOf(c.request.command) === 'emit:a2');
    expect(aCommands.map((c) => textOf(c.request.priorState))).toEqual(['a1', 'a1,b1']);
  });

  it('converges when two runtimes hammer one entity concurrently', async () => {
    const journal = new InMemoryJournal();
    journal.latencyMs = 2;
    const a = setup({ maxAttempts: 50 }, journal);
    const b = setup({ maxAttempts: 50 }, journal);
    const replies = await Promise.all(
      Array.from({ length: 40 }, (_, i) => send(i % 2 === 0 ? a.runtime : b.runtime, 'contended', `emit:${i}`)),
    );
    expect(journal.revisions('contended')).toEqual(Array.from({ length: 40 }, (_, i) => BigInt(i + 1)));
    expect(new Set(replies.map((r) => r.meta.revisionNumber)).size).toBe(40);
    const applied = textOf(replies.find((r) => r.meta.revisionNumber === 40)!.state).split(',');
    expect([...applied].sort()).toEqual(Array.from({ length: 40 }, (_, i) => String(i)).sort());
  });

  it('gives up after maxAttempts conflicts', async () => {
    const journal = new InMemoryJournal();
    journal.append = (request) => {
      journal.appendCalls.push(request);
      return Promise.reject(new JournalConflictError(request.entityId, request.expectedRevision));
    };
    const { runtime } = setup({ maxAttempts: 3 }, journal);
    await expect(send(runtime, 'stuck', 'emit:a')).rejects.toBeInstanceOf(JournalConflictError);
    expect(journal.appendCalls).toHaveLength(3);
  });
});

describe('passivation', () => {
  it('passivates entities idle longer than passivateAfterMs and reloads them on demand', async () => {
    const { runtime } = setup({ passivateAfterMs: 100, sweepIntervalMs: 20 });
    await Promise.all(['p1', 'p2', 'p3'].map((id) => send(runtime, id, 'emit:a')));
    expect(runtime.stats()).toMatchObject({ active: 3, passivated: 0 });
    await sleep(250);
    expect(runtime.stats()).toMatchObject({ active: 0, passivated: 3 });
    const reply = await send(runtime, 'p1', 'emit:b');
    expect(textOf(reply.state)).toBe('a,b');
    expect(runtime.stats().active).toBe(1);
  });

  it('does not passivate an entity with a command in flight', async () => {
    const { runtime } = setup({ passivateAfterMs: 30, sweepIntervalMs: 10 });
    await send(runtime, 'busy', 'emit:a');
    await sleep(150);
    expect(runtime.stats().active).toBe(0);
    const slow = send(runtime, 'busy', 'slow:200:b');
    const queued = send(runtime, 'busy', 'emit:c');
    await sleep(120);
    expect(runtime.stats().active).toBe(1);
    expect(textOf((await queued).state)).toBe('a,b,c');
    await slow;
  });

  it('keeps at most maxActive entities, passivating the least recently used first', async () => {
    const { journal, reads } = readCountingJournal();
    const { runtime } = setup({ maxActive: 3 }, journal);
    for (const id of ['e1', 'e2', 'e3']) await send(runtime, id, 'emit:a');
    await send(runtime, 'e1', 'emit:b'); // e1 becomes most recently used; e2 is now the oldest
    await send(runtime, 'e4', 'emit:a'); // evicts e2
    expect(runtime.stats()).toMatchObject({ active: 3, passivated: 1 });
    reads.length = 0;
    await send(runtime, 'e1', 'emit:c');
    await send(runtime, 'e3', 'emit:b');
    await send(runtime, 'e4', 'emit:b');
    expect(reads).toEqual([]);
    await send(runtime, 'e2', 'emit:b'); // reloaded, evicting e1 (least recent now)
    expect(reads).toEqual(['e2']);
    expect(runtime.stats().active).toBe(3);
  });

  it('never passivates an entity with queued or running commands to honour the cap', async () => {
    const { runtime, journal } = setup({ maxActive: 1 });
    const replies = await Promise.all([
      send(runtime, 'x', 'slow:100:a'),
      send(runtime, 'x', 'emit:b'),
      send(runtime, 'y', 'slow:100:a'),
      send(runtime, 'y', 'emit:b'),
    ]);
    expect(replies.map((r) => textOf(r.state))).toEqual(['a', 'a,b', 'a', 'a,b']);
    expect(journal.revisions('x')).toEqual([1n, 2n]);
    expect(journal.revisions('y')).toEqual([1n, 2n]);
    expect(runtime.stats().active).toBeLessThanOrEqual(1);
  });

  it('stays bounded with many distinct entities', async () => {
    const { runtime } = setup({ maxActive: 50 });
    for (let batch = 0; batch < 20; batch++) {
      await Promise.all(Array.from({ length: 100 }, (_, i) => send(runtime, `m-${batch}-${i}`, 'noop')));
      expect(runtime.stats().active).toBeLessThanOrEqual(100);
    }
    expect(runtime.stats().active).toBeLessThanOrEqual(50);
    expect(runtime.stats().passivated).toBeGreaterThanOrEqual(2000 - 50);
  });
});

describe('getState', () => {
  it('is NotFoundError for an entity without events, and never calls handlers', async () => {
    const { runtime } = setup();
    await expect(runtime.getState('nobody')).rejects.toBeInstanceOf(NotFoundError);
    await send(runtime, 'noop-only', 'noop');
    handler.commands.length = 0;
    await expect(runtime.getState('noop-only')).rejects.toBeInstanceOf(NotFoundError);
    expect(handler.commands).toHaveLength(0);
    expect(handler.events).toHaveLength(0);
  });

  it('returns the state and meta of the latest event, cached or from the journal', async () => {
    const journal = new InMemoryJournal();
    const first = setup({}, journal);
    const reply = await send(first.runtime, 'g', 'emit:a,b');
    handler.commands.length = 0;
    handler.events.length = 0;
    expect(await first.runtime.getState('g')).toEqual(reply);
    const second = setup({}, journal);
    const loaded = await second.runtime.getState('g');
    expect(textOf(loaded.state)).toBe('a,b');
    expect(loaded.meta).toEqual(reply.meta);
    expect(second.runtime.stats().active).toBe(0);
    expect(handler.commands).toHaveLength(0);
    expect(handler.events).toHaveLength(0);
  });
});

describe('close', () => {
  it('finishes queued and running commands, then refuses new ones', async () => {
    const { runtime, journal } = setup();
    const running = send(runtime, 'c', 'slow:100:a');
    const queued = send(runtime, 'c', 'emit:b');
    const closed = runtime.close();
    await expect(send(runtime, 'c', 'emit:z')).rejects.toBeInstanceOf(ShuttingDownError);
    await closed;
    await expect(running).resolves.toBeDefined();
    await expect(queued).resolves.toMatchObject({ meta: { revisionNumber: 2 } });
    expect(journal.revisions('c')).toEqual([1n, 2n]);
    await expect(runtime.getState('c')).rejects.toBeInstanceOf(ShuttingDownError);
  });
});

describe('retain and evict (entity shards across replicas)', () => {
  /** The HandleCommand prior states the handler saw for `command`, in order. */
  function priorStatesOf(command: string): string[] {
    return handler.commands.filter((c) => textOf(c.request.command) === command).map((c) => textOf(c.request.priorState));
  }

  it("carries the lease epoch fenceOf gives in each append, and after a fenced append fails its commands and reloads the entity", async () => {
    const { journal, reads } = readCountingJournal();
    let epoch: bigint | undefined = 4n;
    const { runtime } = setup({ fenceOf: () => epoch }, journal);
    await send(runtime, 'fenced', 'emit:a');
    expect(reads).toEqual(['fenced']);
    journal.failNextAppend = new FencedError('a later lease of its shard fenced it');
    const error = await rejectionOf(send(runtime, 'fenced', 'emit:b'));
    expect(error).toBeInstanceOf(FencedError);
    epoch = 5n;
    expect(textOf((await send(runtime, 'fenced', 'emit:c')).state)).toBe('a,c');
    // the cached copy was dropped: read again from the store
    expect(reads).toEqual(['fenced', 'fenced']);
    expect(journal.appendCalls.map((a) => a.fence)).toEqual([4n, 4n, 5n]);
    epoch = undefined;
    await send(runtime, 'fenced', 'emit:d');
    expect('fence' in journal.appendCalls.at(-1)!).toBe(false);
  });

  it('reloads an entity that is not retained for each command and drops it afterwards', async () => {
    const { journal, reads } = readCountingJournal();
    const asked: string[] = [];
    const { runtime } = setup({ retain: (id) => (asked.push(id), false) }, journal);
    expect(textOf((await send(runtime, 'n', 'emit:a')).state)).toBe('a');
    await vi.waitFor(() => expect(runtime.stats().active).toBe(0));
    expect(textOf((await send(runtime, 'n', 'emit:b')).state)).toBe('a,b');
    await vi.waitFor(() => expect(runtime.stats().active).toBe(0));
    expect(textOf((await send(runtime, 'n', 'emit:c')).state)).toBe('a,b,c');
    await vi.waitFor(() => expect(runtime.stats().active).toBe(0));
    expect(reads).toEqual(['n', 'n', 'n']);
    expect(asked.every((id) => id === 'n')).toBe(true);
    expect(journal.revisions('n')).toEqual([1n, 2n, 3n]);
  });

  it('reloads an entity that is not retained for each batch, even when the next one arrives before the mailbox is seen empty', async () => {
    const { journal, reads } = readCountingJournal();
    const { runtime } = setup({ retain: () => false }, journal);
    // each command is sent as soon as the previous reply arrived: its own batch and append
    for (const event of ['a', 'b', 'c']) await send(runtime, 'back-to-back', `emit:${event}`);
    expect(journal.appendCalls.map((a) => a.expectedRevision)).toEqual([0n, 1n, 2n]);
    expect(reads).toEqual(['back-to-back', 'back-to-back', 'back-to-back']);
    await vi.waitFor(() => expect(runtime.stats().active).toBe(0));
  });

  it('sees what another replica wrote behind its back when the entity is not retained, with no conflict', async () => {
    const journal = new InMemoryJournal();
    const { runtime } = setup({ retain: () => false }, journal);
    const owner = setup({}, journal);
    await send(runtime, 'moved', 'emit:a');
    await send(owner.runtime, 'moved', 'emit:b');
    const reply = await send(runtime, 'moved', 'emit:c');
    expect(textOf(reply.state)).toBe('a,b,c');
    expect(reply.meta.revisionNumber).toBe(3);
    // the handler was asked once, on the state the owner left: no stale attempt, no conflict
    expect(priorStatesOf('emit:c')).toEqual(['a,b']);
    expect(journal.appendCalls.map((a) => a.expectedRevision)).toEqual([0n, 1n, 2n]);
  });

  /**
   * A replica not retaining `entityId`, with 'a' stored, busy for 150 ms on a command without
   * events (on the state it loaded: 'a'), while the owner appends x.
   */
  async function busyWhileTheOwnerMovesOn(entityId: string) {
    const journal = new InMemoryJournal();
    const { runtime } = setup({ retain: () => false }, journal);
    const owner = setup({}, journal);
    await send(runtime, entityId, 'emit:a');
    const busy = send(runtime, entityId, 'slow:150:');
    await sleep(30);
    await send(owner.runtime, entityId, 'emit:x');
    return { runtime, busy };
  }

  it('answers a command without events from the store, not from a copy the owner moved on from', async () => {
    const { runtime, busy } = await busyWhileTheOwnerMovesOn('stale');
    // it arrives after x was stored, queued behind the busy command
    const after = send(runtime, 'stale', 'noop');
    expect(textOf((await busy).state)).toBe('a');
    expect(textOf((await after).state)).toBe('a,x');
    expect(priorStatesOf('noop')).toEqual(['a,x']);
  });

  it('reads an entity that is not retained from the store on GetState, even while it is busy', async () => {
    const { runtime, busy } = await busyWhileTheOwnerMovesOn('read');
    const read = await runtime.getState('read');
    expect(textOf(read.state)).toBe('a,x');
    expect(read.meta.revisionNumber).toBe(2);
    await busy;
  });

  it('keeps a retained entity in memory between commands, asking retain per entity', async () => {
    const { journal, reads } = readCountingJournal();
    const { runtime } = setup({ retain: (id) => id.startsWith('keep') }, journal);
    for (const command of ['emit:a', 'emit:b', 'emit:c']) {
      await send(runtime, 'keep-1', command);
      await send(runtime, 'drop-1', command);
      await sleep(0);
    }
    expect(reads.filter((id) => id === 'keep-1')).toEqual(['keep-1']);
    expect(reads.filter((id) => id === 'drop-1')).toEqual(['drop-1', 'drop-1', 'drop-1']);
    expect(runtime.stats().active).toBe(1);
    expect(textOf((await runtime.getState('keep-1')).state)).toBe('a,b,c');
  });

  it('evicts idle matching entities at once and leaves the others cached', async () => {
    const { journal, reads } = readCountingJournal();
    const { runtime } = setup({}, journal);
    const other = setup({}, journal);
    for (const id of ['a-1', 'a-2', 'b-1']) await send(runtime, id, 'emit:x');
    expect(runtime.stats()).toMatchObject({ active: 3, passivated: 0 });

    await runtime.evict((id) => id.startsWith('a-'));
    expect(runtime.stats()).toMatchObject({ active: 1, passivated: 2 });

    // the evicted entity's next command reloads it, seeing what was written meanwhile
    await send(other.runtime, 'a-1', 'emit:y');
    reads.length = 0;
    handler.commands.length = 0;
    const a1 = await send(runtime, 'a-1', 'emit:z');
    expect(textOf(a1.state)).toBe('x,y,z');
    expect(priorStatesOf('emit:z')).toEqual(['x,y']);
    expect(reads).toEqual(['a-1']);
    // the one not selected was not reloaded
    await send(runtime, 'b-1', 'emit:w');
    expect(reads).toEqual(['a-1']);
  });

  it('resolves at once when nothing matches, evicting nothing', async () => {
    const { runtime } = setup();
    await send(runtime, 'kept', 'emit:a');
    await runtime.evict(() => false);
    expect(runtime.stats()).toMatchObject({ active: 1, passivated: 0 });
  });

  it('waits for a busy matching entity to finish its queued commands, then drops it', async () => {
    const { journal, reads } = readCountingJournal();
    const { runtime } = setup({}, journal);
    const other = setup({}, journal);
    await send(runtime, 'idle', 'emit:a');
    const settled: string[] = [];
    const first = send(runtime, 'busy', 'slow:150:a').then((r) => (settled.push('a'), r));
    const second = send(runtime, 'busy', 'emit:b').then((r) => (settled.push('b'), r));
    await sleep(30);

    let evicted = false;
    const eviction = runtime.evict((id) => id === 'busy' || id === 'idle').then(() => (evicted = true));
    // the idle one is gone at once; the busy one stays until its mailbox is empty
    expect(runtime.stats().active).toBe(1);
    // a command arriving meanwhile is still taken, and waited for
    const third = send(runtime, 'busy', 'emit:c').then((r) => (settled.push('c'), r));
    await sleep(50);
    expect(evicted).toBe(false);
    expect(settled).toEqual([]);

    await eviction;
    expect(settled).toEqual(['a', 'b', 'c']);
    expect(textOf((await third).state)).toBe('a,b,c');
    await Promise.all([first, second]);
    expect(runtime.stats().active).toBe(0);

    // afterwards the entity is loaded from the store again, with what another replica wrote
    await send(other.runtime, 'busy', 'emit:d');
    reads.length = 0;
    handler.commands.length = 0;
    const next = await send(runtime, 'busy', 'emit:e');
    expect(reads).toEqual(['busy']);
    expect(textOf(next.state)).toBe('a,b,c,d,e');
    expect(priorStatesOf('emit:e')).toEqual(['a,b,c,d']);
  });
});

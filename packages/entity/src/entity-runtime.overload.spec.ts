// The bounds of the entity runtime: mailbox, commands in flight, journal queue, cache bytes and
// messages too large to reply or deliver. Ports are in memory; appends are held back by a gate
// so queues fill deterministically, without timing.
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { MessageTooLargeError, OverloadedError, silentLogger } from '@chiefofstate/core';
import {
  EventWrapperSchema,
  HandleCommandRequestSchema,
  HandleReadSideRequestSchema,
  ProcessCommandResponseSchema,
} from '@chiefofstate/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { createEntityRuntime, type EntityRuntime, type EntityRuntimeOptions } from './entity-runtime.js';
import type { JournalAppend, JournalAppendResult } from './ports.js';
import type { RefusalReason } from './refusals.js';
import { InMemoryJournal, countingReads } from './test-support/in-memory-stores.js';
import { str, textOf, useTestHandler } from './test-support/test-handler.js';

const handler = useTestHandler();
const runtimes: EntityRuntime[] = [];
const gates: GatedJournal[] = [];
afterEach(async () => {
  // a failed test may leave appends held: close waits for them
  for (const journal of gates.splice(0)) journal.open();
  await Promise.all(runtimes.splice(0).map((r) => r.close()));
  handler.reset();
});

/** An in-memory journal whose appends wait until `open()` (then pass through for good). */
class GatedJournal extends InMemoryJournal {
  private release!: () => void;
  private readonly gate = new Promise<void>((resolve) => (this.release = resolve));
  waiting = 0;

  constructor() {
    super();
    gates.push(this);
  }

  override async append(request: JournalAppend): Promise<JournalAppendResult> {
    this.waiting++;
    await this.gate;
    this.waiting--;
    return super.append(request);
  }

  open(): void {
    this.release();
  }
}

const FIXED_CLOCK = { now: () => new Date(Date.UTC(2026, 0, 1)) };

function setup(options: Partial<EntityRuntimeOptions> = {}, journal: InMemoryJournal = new InMemoryJournal()) {
  const refused: RefusalReason[] = [];
  const runtime = createEntityRuntime({
    journal,
    handler: handler.client(),
    clock: FIXED_CLOCK,
    onRefused: (reason) => refused.push(reason),
    ...options,
  });
  runtimes.push(runtime);
  return { runtime, journal, refused };
}

const send = (runtime: EntityRuntime, entityId: string, command: string) => runtime.processCommand({ entityId, command: str(command) });

/** How the promise ended within a macrotask: its error, 'resolved', or 'pending' ("at once" or not). */
function outcomeAtOnce(promise: Promise<unknown>): Promise<unknown> {
  return Promise.race([
    promise.then(
      () => 'resolved',
      (error: unknown) => error,
    ),
    new Promise((resolve) => setImmediate(() => resolve('pending'))),
  ]);
}

async function until(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !condition(); i++) await new Promise((resolve) => setTimeout(resolve, 2));
  expect(condition()).toBe(true);
}

describe('entity mailbox bound', () => {
  it('refuses commands beyond mailboxSize (queued or running) at once with OverloadedError', async () => {
    const journal = new GatedJournal();
    const { runtime, refused } = setup({ mailboxSize: 3 }, journal);
    const accepted = ['emit:a', 'emit:b', 'emit:c'].map((c) => send(runtime, 'hot', c));
    await until(() => journal.waiting === 1); // the first append is held: one running, two queued
    const over = await Promise.all([send(runtime, 'hot', 'emit:d'), send(runtime, 'hot', 'emit:e')].map(outcomeAtOnce));
    for (const error of over) {
      expect(error).toBeInstanceOf(OverloadedError);
      expect((error as Error).message).toMatch(/COS_ENTITY_MAILBOX_SIZE/);
    }
    // other entities are not affected
    const other = send(runtime, 'other', 'emit:x');
    journal.open();
    expect((await Promise.all(accepted)).map((r) => textOf(r.state))).toEqual(['a', 'a,b', 'a,b,c']);
    await other;
    expect(journal.revisions('hot')).toEqual([1n, 2n, 3n]);
    expect(refused).toEqual(['entity_mailbox', 'entity_mailbox']);
    // the mailbox drained: commands are taken again
    await expect(send(runtime, 'hot', 'emit:f')).resolves.toMatchObject({ meta: { revisionNumber: 4 } });
  });
});

describe('a mailbox that never runs dry', () => {
  it('keeps order and revisions across the compaction of its handled commands', async () => {
    const journal = new GatedJournal();
    const { runtime } = setup({ mailboxSize: 2000 }, journal);
    const replies = Array.from({ length: 1500 }, (_, i) => send(runtime, 'long', `emit:${i}`));
    journal.open();
    const done = await Promise.all(replies);
    expect(done.map((r) => r.meta.revisionNumber)).toEqual(Array.from({ length: 1500 }, (_, i) => i + 1));
    expect(journal.revisions('long')).toHaveLength(1500);
  }, 60_000);
});

describe('commands in flight bound', () => {
  it('refuses commands beyond maxInFlight, all entities together, at once with OverloadedError', async () => {
    const journal = new GatedJournal();
    const { runtime, refused } = setup({ maxInFlight: 3 }, journal);
    const accepted = ['e1', 'e2', 'e3'].map((id) => send(runtime, id, 'emit:a'));
    const over = await Promise.all([send(runtime, 'e4', 'emit:a'), send(runtime, 'e1', 'emit:b')].map(outcomeAtOnce));
    for (const error of over) {
      expect(error).toBeInstanceOf(OverloadedError);
      expect((error as Error).message).toMatch(/COS_MAX_IN_FLIGHT_COMMANDS/);
    }
    expect(runtime.stats().active).toBe(3); // a refused command leaves no entity behind
    journal.open();
    await Promise.all(accepted);
    expect(refused).toEqual(['in_flight_commands', 'in_flight_commands']);
    await expect(send(runtime, 'e4', 'emit:a')).resolves.toMatchObject({ meta: { revisionNumber: 1 } });
  });
});

describe('journal queue bound', () => {
  it('fails the commands of an append the journal refused as overloaded, and keeps the entity usable', async () => {
    const journal = new InMemoryJournal();
    const { runtime, refused } = setup({}, journal);
    await send(runtime, 'j', 'emit:a');
    journal.failNextAppend = new OverloadedError('journal overloaded');
    await expect(send(runtime, 'j', 'emit:b')).rejects.toBeInstanceOf(OverloadedError);
    expect(refused).toEqual(['journal_queue']);
    const reply = await send(runtime, 'j', 'emit:c');
    expect([textOf(reply.state), reply.meta.revisionNumber]).toEqual(['a,c', 2]);
  });
});

describe('cache bytes bound', () => {
  it('counts the serialized size of each cached state and meta, as the reply carries them', async () => {
    const { runtime } = setup();
    const reply = await send(runtime, 'sized-1', 'emit:hello');
    const replyBytes = toBinary(ProcessCommandResponseSchema, create(ProcessCommandResponseSchema, reply)).byteLength;
    expect(runtime.stats().cacheBytes).toBe(replyBytes);
    await send(runtime, 'sized-2', 'emit:hello');
    expect(runtime.stats().cacheBytes).toBe(2 * replyBytes);
  });

  it('counts an entity recovered from the journal at the same size', async () => {
    const journal = new InMemoryJournal();
    const first = setup({}, journal).runtime;
    await send(first, 'recovered', 'emit:hello');
    const bytes = first.stats().cacheBytes;
    const second = setup({}, journal).runtime;
    await send(second, 'recovered', 'noop');
    expect(second.stats().cacheBytes).toBe(bytes);
  });

  it('passivates least recently used idle entities while the cached bytes exceed cacheMaxBytes', async () => {
    const probe = setup().runtime;
    await send(probe, 'e0', `emit:${'y'.repeat(1000)}`);
    const one = probe.stats().cacheBytes;
    const { journal, reads } = countingReads(new InMemoryJournal());
    const { runtime } = setup({ cacheMaxBytes: 3 * one }, journal);
    for (const id of ['e1', 'e2', 'e3']) await send(runtime, id, `emit:${'y'.repeat(1000)}`);
    expect(runtime.stats()).toMatchObject({ active: 3, cacheBytes: 3 * one, passivated: 0 });
    await send(runtime, 'e1', 'noop'); // e1 most recently used: e2 is the oldest
    await send(runtime, 'e4', `emit:${'y'.repeat(1000)}`);
    expect(runtime.stats()).toMatchObject({ active: 3, cacheBytes: 3 * one, passivated: 1 });
    reads.length = 0;
    for (const id of ['e1', 'e3', 'e4']) await send(runtime, id, 'noop');
    expect(reads).toEqual([]);
    await send(runtime, 'e2', 'noop'); // reloaded: it was the one passivated
    expect(reads).toEqual(['e2']);
  });

  it('never passivates an entity in the middle of its commands, however small the cap', async () => {
    const { journal, reads } = countingReads(new GatedJournal());
    const { runtime } = setup({ cacheMaxBytes: 1 }, journal);
    const replies = ['emit:a', 'emit:b', 'emit:c', 'emit:d'].map((c) => send(runtime, 'busy', c));
    await until(() => journal.waiting === 1);
    journal.open();
    expect((await Promise.all(replies)).map((r) => textOf(r.state))).toEqual(['a', 'a,b', 'a,b,c', 'a,b,c,d']);
    // loaded once for all of them; dropped once idle, since it alone is over the cap
    expect(reads).toEqual(['busy']);
    expect(runtime.stats()).toMatchObject({ active: 0, cacheBytes: 0 });
  });
});

describe('messages too large (refused before the commit)', () => {
  const BIG = 4 * 1024 * 1024 - 70; // the handler's HandleEventResponse fits in 4 MiB, the reply does not

  it('fails a command whose state is just under 4 MiB, persists nothing and keeps the entity usable', async () => {
    const warnings: string[] = [];
    const logger = { ...silentLogger, warn: (_fields: object | string, message?: string) => warnings.push(message ?? '') };
    const { runtime, journal, refused } = setup({ logger });
    await send(runtime, 'big', 'emit:a');
    const error = await runtime.processCommand({ entityId: 'big', command: str(`big:${BIG}`) }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MessageTooLargeError);
    expect((error as Error).message).toMatch(/COS_GRPC_MAX_MESSAGE_BYTES/);
    expect(journal.revisions('big')).toEqual([1n]);
    expect(refused).toEqual(['message_too_large']);
    expect(warnings).toContain('command refused: its state is too large for a message');
    const reply = await send(runtime, 'big', 'emit:b');
    expect([textOf(reply.state), reply.meta.revisionNumber]).toEqual(['a,b', 2]);
    expect((await runtime.getState('big')).meta.revisionNumber).toBe(2);
  });

  it('refuses exactly when the next HandleCommand request would exceed maxMessageBytes', async () => {
    const command = str('big:2000');
    const probe = setup().runtime;
    const reply = await probe.processCommand({ entityId: 'edge-0', command });
    const next = toBinary(
      HandleCommandRequestSchema,
      create(HandleCommandRequestSchema, { command, priorState: reply.state, priorEventMeta: reply.meta }),
    ).byteLength;
    const fits = setup({ maxMessageBytes: next }).runtime;
    await expect(fits.processCommand({ entityId: 'edge-1', command })).resolves.toBeDefined();
    const over = setup({ maxMessageBytes: next - 1 });
    await expect(over.runtime.processCommand({ entityId: 'edge-2', command })).rejects.toBeInstanceOf(MessageTooLargeError);
    expect(over.journal.revisions('edge-2')).toEqual([]);
  });

  it('refuses exactly when a read-side delivery of the event would exceed maxMessageBytes', async () => {
    const command = str('big:1000');
    const readSideId = 'r'.repeat(300);
    const probe = setup();
    await probe.runtime.processCommand({ entityId: 'rs-0', command });
    const wrapper = fromBinary(EventWrapperSchema, probe.journal.entities.get('rs-0')![0]!.payload);
    const delivery = toBinary(
      HandleReadSideRequestSchema,
      create(HandleReadSideRequestSchema, { event: wrapper.event, state: wrapper.resultingState, meta: wrapper.meta, readSideId }),
    ).byteLength;
    const fits = setup({ maxMessageBytes: delivery, readSideIds: ['short', readSideId] }).runtime;
    await expect(fits.processCommand({ entityId: 'rs-1', command })).resolves.toBeDefined();
    const over = setup({ maxMessageBytes: delivery - 1, readSideIds: ['short', readSideId] });
    const error = await over.runtime.processCommand({ entityId: 'rs-2', command }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MessageTooLargeError);
    expect((error as Error).message).toMatch(/read-side delivery/);
    expect(over.journal.revisions('rs-2')).toEqual([]);
    // without read sides only the reply and the next request count
    const none = setup({ maxMessageBytes: delivery - 1 }).runtime;
    await expect(none.processCommand({ entityId: 'rs-3', command })).resolves.toBeDefined();
  });

  it('in a batch, fails only the command that is too large; the others build on the state before it', async () => {
    const journal = new GatedJournal();
    const { runtime } = setup({ maxMessageBytes: 1000 }, journal);
    const first = send(runtime, 'mixed', 'emit:a');
    await until(() => journal.waiting === 1);
    const queued = [send(runtime, 'mixed', 'emit:b'), send(runtime, 'mixed', 'big:2000'), send(runtime, 'mixed', 'emit:c')];
    journal.open();
    const outcomes = await Promise.allSettled([first, ...queued]);
    expect(outcomes.map((o) => (o.status === 'fulfilled' ? textOf(o.value.state) : o.reason.constructor.name))).toEqual([
      'a',
      'a,b',
      'MessageTooLargeError',
      'a,b,c',
    ]);
    expect(journal.revisions('mixed')).toEqual([1n, 2n, 3n]);
  });
});

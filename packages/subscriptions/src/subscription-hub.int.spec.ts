import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidArgumentError, OverloadedError, ShuttingDownError } from '@chiefofstate/core';
import { createJournal, JOURNAL_NOTIFY_CHANNEL, journalMigrations, type Journal } from '@chiefofstate/journal';
import { migrateToLatest, notify } from '@chiefofstate/postgres';
import { openTestDatabase, testStoreKinds, type TestDatabase } from '@chiefofstate/postgres/testing';
import { EventWrapperSchema } from '@chiefofstate/protocol';
import { pollUntil } from '@chiefofstate/testing';
import { createSubscriptionHub, type SubscribedEvent, type SubscriptionHub, type SubscriptionHubOptions } from './subscription-hub.js';

let counter = 0;
const newId = (prefix = 'e') => `${prefix}-${++counter}-${Math.random().toString(36).slice(2, 8)}`;
const wrapper = (entityId: string, revision: number) =>
  toBinary(EventWrapperSchema, create(EventWrapperSchema, { meta: { entityId, revisionNumber: revision } }));

/** Appends `count` events to the entity, `perAppend` at a time, from revision `after` + 1. */
async function appendEvents(journal: Journal, entityId: string, count: number, after = 0, perAppend = 1): Promise<void> {
  for (let revision = after; revision < after + count; revision += perAppend) {
    const n = Math.min(perAppend, after + count - revision);
    const events = Array.from({ length: n }, (_, i) => wrapper(entityId, revision + i + 1));
    await journal.append({ entityId, expectedRevision: BigInt(revision), events });
  }
}

/** Takes events from the iterator until `enough` says so, within `ms`. */
async function collect(
  iterator: AsyncIterator<SubscribedEvent>,
  enough: (events: SubscribedEvent[]) => boolean,
  ms = 20_000,
): Promise<SubscribedEvent[]> {
  const events: SubscribedEvent[] = [];
  const deadline = Date.now() + ms;
  while (!enough(events)) {
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`only ${events.length} events within ${ms} ms`);
    let timer: NodeJS.Timeout | undefined;
    const next = await Promise.race([
      iterator.next(),
      new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), left))),
    ]).finally(() => clearTimeout(timer));
    if (next === 'timeout') throw new Error(`only ${events.length} events within ${ms} ms`);
    if (next.done) break;
    events.push(next.value);
  }
  return events;
}

/** Each entity's revisions, in the order received. */
function revisionsByEntity(events: readonly SubscribedEvent[]): Map<string, bigint[]> {
  const byEntity = new Map<string, bigint[]>();
  for (const event of events) {
    const list = byEntity.get(event.entityId) ?? [];
    list.push(event.revision);
    byEntity.set(event.entityId, list);
  }
  return byEntity;
}

const run = (n: number) => Array.from({ length: n }, (_, i) => BigInt(i + 1));

describe.each(await testStoreKinds())('subscriptions on %s', (kind) => {
  let database: TestDatabase;
  let journal: Journal;
  const hubs: SubscriptionHub[] = [];

  const newHub = async (options: Partial<SubscriptionHubOptions> = {}): Promise<SubscriptionHub> => {
    const hub = createSubscriptionHub({
      journal,
      listen: (channel, listener) => database.listen(channel, listener),
      notify: (channel, payload) => notify(database.kysely, channel, payload),
      journalChannel: JOURNAL_NOTIFY_CHANNEL,
      ...options,
    });
    await hub.start();
    hubs.push(hub);
    return hub;
  };

  beforeAll(async () => {
    database = await openTestDatabase(kind);
    await migrateToLatest({ database, migrations: journalMigrations });
    journal = createJournal({ database, numShards: 8 });
  });
  afterAll(async () => {
    for (const hub of hubs) await hub.close();
    await journal?.close();
    await database?.dispose();
  });

  it('catches up on every entity from offset 0 while appends go on: no gap, no duplicate, positions ascending', async () => {
    const hub = await newHub({ pageSize: 25 });
    const before = newId('all');
    await appendEvents(journal, before, 120, 0, 7);
    const ids = [before, newId('all'), newId('all'), newId('all')];
    const start = (await journal.readEntity(before, { fromRevision: 1n, limit: 1 }))[0]!.position - 1n;
    const controller = new AbortController();
    const { events } = await hub.subscribeAll({ afterPosition: start, signal: controller.signal });
    const iterator = events[Symbol.asyncIterator]();
    // more events while the subscriber catches up: 120 + 3 x 80 + 40
    const writing = Promise.all([
      ...ids.slice(1).map((id) => appendEvents(journal, id, 80, 0, 3)),
      appendEvents(journal, before, 40, 120, 1),
    ]);
    const received = await collect(iterator, (list) => list.length >= 400);
    await writing;
    controller.abort();
    const positions = received.map((e) => e.position);
    expect(positions).toEqual([...positions].sort((a, b) => (a < b ? -1 : 1)));
    expect(new Set(positions).size).toBe(positions.length);
    const byEntity = revisionsByEntity(received);
    expect(byEntity.get(before)).toEqual(run(160));
    for (const id of ids.slice(1)) expect(byEntity.get(id)).toEqual(run(80));
    // what the journal holds, exactly
    const stored = await journal.readAll({ afterPosition: start, limit: 1000 });
    expect(positions).toEqual(stored.map((e) => e.position));
    expect(fromBinary(EventWrapperSchema, received[0]!.payload).meta?.entityId).toBe(before);
  });

  it('catches up one entity from a revision while commands keep arriving, then follows it live', async () => {
    const hub = await newHub({ pageSize: 50 });
    const id = newId('one');
    const other = newId('other');
    await appendEvents(journal, id, 300, 0, 10);
    const controller = new AbortController();
    const { events, id: subscriptionId } = await hub.subscribe({ entityId: id, fromRevision: 1n, signal: controller.signal });
    expect(subscriptionId).toMatch(/^[0-9a-f-]{36}$/);
    const iterator = events[Symbol.asyncIterator]();
    const writing = Promise.all([appendEvents(journal, id, 200, 300, 1), appendEvents(journal, other, 50)]);
    const received = await collect(iterator, (list) => list.length >= 500);
    await writing;
    expect(received.map((e) => e.revision)).toEqual(run(500));
    expect(received.every((e) => e.entityId === id && e.subscriptionId === subscriptionId)).toBe(true);
    // from a later revision
    const later = await hub.subscribe({ entityId: id, fromRevision: 498n, signal: controller.signal });
    const tail = await collect(later.events[Symbol.asyncIterator](), (list) => list.length >= 3);
    expect(tail.map((e) => e.revision)).toEqual([498n, 499n, 500n]);
    controller.abort();
  });

  it('live only without a start: events committed before the call are not sent, later ones are', async () => {
    const hub = await newHub();
    const id = newId('live');
    await appendEvents(journal, id, 5);
    const controller = new AbortController();
    const one = await hub.subscribe({ entityId: id, signal: controller.signal });
    const all = await hub.subscribeAll({ signal: controller.signal });
    const oneIterator = one.events[Symbol.asyncIterator]();
    const allIterator = all.events[Symbol.asyncIterator]();
    const firstOne = oneIterator.next();
    const firstAll = allIterator.next();
    await appendEvents(journal, id, 2, 5);
    expect((await firstOne).value?.revision).toBe(6n);
    expect((await firstAll).value?.revision).toBe(6n);
    expect((await oneIterator.next()).value?.revision).toBe(7n);
    controller.abort();
  });

  it('wakes on the journal notification, not on its poll', async () => {
    const hub = await newHub({ pollIntervalMs: 600_000 });
    const id = newId('wake');
    const controller = new AbortController();
    const iterator = (await hub.subscribe({ entityId: id, signal: controller.signal })).events[Symbol.asyncIterator]();
    const first = iterator.next();
    await new Promise((resolve) => setTimeout(resolve, 50)); // the cursor is waiting now
    const started = Date.now();
    await appendEvents(journal, id, 1);
    const event = await Promise.race([first, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no wake')), 5000))]);
    expect(event.value?.revision).toBe(1n);
    expect(Date.now() - started).toBeLessThan(2000);
    controller.abort();
  });

  it('a slow subscriber falls behind the shared tail and reads the journal: every event, in order, memory bounded', async () => {
    const sources: string[] = [];
    const hub = await newHub({ tailCapacity: 20, pageSize: 10, onEvent: (_kind, source) => sources.push(source) });
    const id = newId('slow');
    const controller = new AbortController();
    const iterator = (await hub.subscribeAll({ signal: controller.signal })).events[Symbol.asyncIterator]();
    const first = iterator.next();
    // a burst while the subscriber takes nothing after its first event
    await appendEvents(journal, id, 400, 0, 20);
    expect((await first).value?.revision).toBe(1n);
    await pollUntil(() => hub.stats().tailEvents === 20, 10_000, 'the tail read the burst');
    expect(hub.stats().tailEvents).toBeLessThanOrEqual(20);
    const rest = await collect(iterator, (list) => list.length >= 399);
    expect(rest.map((e) => e.revision)).toEqual(run(400).slice(1));
    expect(sources).toContain('journal');
    expect(sources.at(-1)).toBe('tail');
    controller.abort();
  });

  it('Unsubscribe ends the stream normally, also when the subscription is served by another process', async () => {
    const hub = await newHub();
    const other = await newHub(); // another replica on the same database
    const id = newId('unsub');
    const controller = new AbortController();
    const local = await hub.subscribe({ entityId: id, subscriptionId: 'sub-local', signal: controller.signal });
    const remote = await other.subscribeAll({ subscriptionId: 'sub-remote', signal: controller.signal });
    expect(hub.stats()).toMatchObject({ entity: 1, all: 0 });
    const localDone = collect(local.events[Symbol.asyncIterator](), () => false);
    const remoteDone = collect(remote.events[Symbol.asyncIterator](), () => false);
    await hub.unsubscribe('sub-local');
    expect(await localDone).toEqual([]);
    await hub.unsubscribe('sub-remote'); // served by `other`: reaches it through NOTIFY
    expect(await remoteDone).toEqual([]);
    await pollUntil(() => hub.stats().entity === 0 && other.stats().all === 0, 5000, 'released');
    await hub.unsubscribe('never-was'); // unknown ids still answer
    await expect(hub.unsubscribe('x'.repeat(257))).rejects.toThrow(InvalidArgumentError);
    await expect(hub.subscribeAll({ subscriptionId: 'x'.repeat(257), signal: controller.signal })).rejects.toThrow(InvalidArgumentError);
  });

  it('hands out pages: every event once, in order; a subscriber that took part of a page resumes after what it took', async () => {
    const hub = await newHub({ pageSize: 10 });
    const id = newId('pages');
    await appendEvents(journal, id, 35, 0, 35);
    const controller = new AbortController();
    const paged = await hub.subscribe({ entityId: id, fromRevision: 1n, signal: controller.signal });
    const sizes: number[] = [];
    const revisions: bigint[] = [];
    for await (const page of paged.batches) {
      expect(page.length).toBeGreaterThan(0);
      sizes.push(page.length);
      revisions.push(...page.map((event) => event.revision));
      if (revisions.length >= 35) break;
    }
    expect(revisions).toEqual(run(35));
    // read from the journal a page at a time (its page size), not one event at a time
    expect(sizes).toEqual([10, 10, 10, 5]);
    expect(() => paged.events).toThrow(/read once/);

    // one by one: three events of a ten-event page taken when the process stops
    const partial = await hub.subscribe({ entityId: id, fromRevision: 1n, signal: controller.signal });
    const iterator = partial.events[Symbol.asyncIterator]();
    await collect(iterator, (list) => list.length >= 3);
    await hub.close();
    const error = await iterator.next().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ShuttingDownError);
    expect((error as ShuttingDownError).publicMessage).toContain('from_revision=4');
  });

  it('refuses subscriptions beyond maxActive, and ends open ones with their resume position on close', async () => {
    const hub = await newHub({ maxActive: 1 });
    const id = newId('close');
    await appendEvents(journal, id, 3);
    const controller = new AbortController();
    const open = await hub.subscribe({ entityId: id, fromRevision: 1n, signal: controller.signal });
    await expect(hub.subscribeAll({ signal: controller.signal })).rejects.toThrow(OverloadedError);
    const iterator = open.events[Symbol.asyncIterator]();
    await collect(iterator, (list) => list.length >= 3);
    const ended = iterator.next();
    await hub.close();
    const error = await ended.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ShuttingDownError);
    expect((error as ShuttingDownError).publicMessage).toContain('from_revision=4');
  });
});

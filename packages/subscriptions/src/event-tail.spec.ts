import { describe, expect, it } from 'vitest';
import { pollUntil } from '@chiefofstate/testing';
import { createEventTail, type EventTailOptions } from './event-tail.js';
import type { JournalEventRecord } from './ports.js';

/** An in-memory journal: positions 1, 2, 3... with the holes the test makes. */
function fakeJournal() {
  const events: JournalEventRecord[] = [];
  let reads = 0;
  return {
    events,
    reads: () => reads,
    add(count: number, bytes = 10, gap = 0) {
      for (let i = 0; i < count; i++) {
        const position = (events.at(-1)?.position ?? 0n) + 1n + BigInt(i === 0 ? gap : 0);
        events.push({ position, entityId: `e${position}`, revision: 1n, writtenAt: new Date(), payload: new Uint8Array(bytes) });
      }
    },
    journal: {
      readAll: async ({ afterPosition, limit }: { afterPosition: bigint; limit: number }) => {
        reads++;
        return events.filter((e) => e.position > afterPosition).slice(0, limit);
      },
      latestPosition: async () => events.at(-1)?.position ?? 0n,
    },
  };
}

function tailOf(fake: ReturnType<typeof fakeJournal>, options: Partial<EventTailOptions> = {}, active = { on: true }) {
  return createEventTail({
    journal: fake.journal,
    channel: 'c',
    capacity: 5,
    maxBytes: 1000,
    pageSize: 3,
    pollIntervalMs: 60_000,
    active: () => active.on,
    ...options,
  });
}

describe('event tail', () => {
  it('starts at the journal end, reads in pages after it, and keeps an exact window of the newest events', async () => {
    const fake = fakeJournal();
    fake.add(4);
    const tail = tailOf(fake);
    await tail.start();
    expect(tail.position()).toBe(4n);
    expect(tail.after(4n, 10)).toEqual([]);
    expect(tail.after(3n, 10)).toBeUndefined(); // before the window: read the journal
    fake.add(4, 10, 3); // a hole: positions 8..11
    const version = tail.version();
    tail.poke();
    await pollUntil(() => tail.position() === 11n, 1000, 'read');
    expect(tail.version()).not.toBe(version);
    expect(tail.after(4n, 10)?.map((e) => e.position)).toEqual([8n, 9n, 10n, 11n]);
    expect(tail.after(9n, 1)?.map((e) => e.position)).toEqual([10n]);
    fake.add(3); // 12..14: 7 events read, 5 kept
    tail.poke();
    await pollUntil(() => tail.position() === 14n, 1000, 'read');
    expect(tail.stats().events).toBe(5);
    expect(tail.after(8n, 10)).toBeUndefined();
    expect(tail.after(9n, 10)?.map((e) => e.position)).toEqual([10n, 11n, 12n, 13n, 14n]);
    await tail.close();
  });

  it('keeps at most maxBytes of payload (at least one event)', async () => {
    const fake = fakeJournal();
    const tail = tailOf(fake, { maxBytes: 250 });
    await tail.start();
    fake.add(4, 100);
    tail.poke();
    await pollUntil(() => tail.position() === 4n, 1000, 'read');
    expect(tail.stats()).toEqual({ events: 2, bytes: 200 });
    fake.add(1, 5000);
    tail.poke();
    await pollUntil(() => tail.position() === 5n, 1000, 'read');
    expect(tail.stats()).toEqual({ events: 1, bytes: 5000 });
    await tail.close();
  });

  it('reads nothing while nobody subscribes, then starts again from the journal end', async () => {
    const fake = fakeJournal();
    const active = { on: false };
    const tail = tailOf(fake, {}, active);
    await tail.start();
    fake.add(50);
    tail.poke();
    tail.poke();
    await new Promise((resolve) => setImmediate(resolve));
    expect(fake.reads()).toBe(0);
    expect(tail.position()).toBe(0n);
    active.on = true;
    tail.poke();
    await pollUntil(() => tail.position() === 50n, 1000, 'skipped ahead');
    expect(tail.stats().events).toBe(0);
    expect(tail.after(0n, 10)).toBeUndefined();
    expect(fake.reads()).toBe(1); // one read after the end, nothing of the 50
    await tail.close();
  });

  it('wakes waiters on new events, and on abort', async () => {
    const fake = fakeJournal();
    const tail = tailOf(fake);
    await tail.start();
    const controller = new AbortController();
    const woken = tail.changed(tail.version(), controller.signal);
    fake.add(1);
    tail.poke();
    await woken;
    const aborted = tail.changed(tail.version(), controller.signal);
    controller.abort();
    await aborted;
    // an outdated version resolves at once
    await tail.changed(tail.version() - 1, new AbortController().signal);
    await tail.close();
  });
});

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createStoreAvailability } from './store-availability.js';

describe('store availability', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  /** A probe whose outcome the test sets; records when it ran. */
  function scriptedProbe() {
    const state = { up: false, runs: [] as number[] };
    const probe = async () => {
      state.runs.push(Date.now());
      if (!state.up) throw new Error('connect ECONNREFUSED');
    };
    return { state, probe };
  }

  it('stays available when the probe after a failure succeeds', async () => {
    const { state, probe } = scriptedProbe();
    state.up = true;
    const changes: boolean[] = [];
    const availability = createStoreAvailability({ probe, onChange: (up) => changes.push(up) });
    availability.suspect(new Error('connection terminated'));
    await vi.advanceTimersByTimeAsync(0);
    expect(availability.available()).toBe(true);
    expect(availability.failures()).toBe(1);
    expect(state.runs).toHaveLength(1);
    expect(changes).toEqual([]);
    availability.close();
  });

  it('goes down on a failed probe, probes again with a bounded backoff, and comes back by itself', async () => {
    const { state, probe } = scriptedProbe();
    const changes: Array<[boolean, unknown]> = [];
    const availability = createStoreAvailability({
      probe,
      minBackoffMs: 100,
      maxBackoffMs: 400,
      onChange: (up, error) => changes.push([up, error]),
    });
    const started = Date.now();
    availability.suspect(new Error('connection terminated'));
    // a second failure while probing starts no second probe loop
    availability.suspect(new Error('connection terminated'));
    await vi.advanceTimersByTimeAsync(0);
    expect(availability.available()).toBe(false);
    expect(String(availability.lastError())).toMatch(/ECONNREFUSED/);
    await vi.advanceTimersByTimeAsync(2000);
    // 0, 100, 300 (+200), 700 (+400), then every 400
    expect(state.runs.slice(0, 5).map((t) => t - started)).toEqual([0, 100, 300, 700, 1100]);
    state.up = true;
    await vi.advanceTimersByTimeAsync(400);
    expect(availability.available()).toBe(true);
    expect(changes.map(([up]) => up)).toEqual([false, true]);
    const runs = state.runs.length;
    await vi.advanceTimersByTimeAsync(5000);
    expect(state.runs).toHaveLength(runs); // no probing while up and nothing failed
    expect(availability.failures()).toBe(2);
    availability.close();
  });

  it('probes on check() without counting a failure, and stops probing once closed', async () => {
    const { state, probe } = scriptedProbe();
    const availability = createStoreAvailability({ probe, minBackoffMs: 100, maxBackoffMs: 100 });
    availability.check();
    await vi.advanceTimersByTimeAsync(250);
    expect(availability.available()).toBe(false);
    expect(availability.failures()).toBe(0);
    availability.close();
    const runs = state.runs.length;
    await vi.advanceTimersByTimeAsync(1000);
    expect(state.runs).toHaveLength(runs);
  });
});

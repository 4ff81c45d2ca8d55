import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '@chiefofstate/core';
import { shouldSnapshot } from './policy.js';

describe('shouldSnapshot', () => {
  const every3 = { enabled: true, frequency: 3 };

  it('is true exactly when a multiple of the frequency is reached one event at a time', () => {
    const hits = [];
    for (let r = 1n; r <= 10n; r++) if (shouldSnapshot(every3, r - 1n, r)) hits.push(r);
    expect(hits).toEqual([3n, 6n, 9n]);
  });

  it('counts a multi-event jump across a multiple, and not one that stays between multiples', () => {
    expect(shouldSnapshot(every3, 2n, 4n)).toBe(true); // crosses 3
    expect(shouldSnapshot(every3, 1n, 3n)).toBe(true); // lands on 3
    expect(shouldSnapshot(every3, 3n, 5n)).toBe(false); // 3 was already covered
    expect(shouldSnapshot(every3, 4n, 5n)).toBe(false);
    expect(shouldSnapshot(every3, 0n, 100n)).toBe(true);
    expect(shouldSnapshot(every3, 5n, 6n)).toBe(true);
    expect(shouldSnapshot(every3, 6n, 8n)).toBe(false);
  });

  it('snapshots after every event with frequency 1', () => {
    expect(shouldSnapshot({ enabled: true, frequency: 1 }, 0n, 1n)).toBe(true);
    expect(shouldSnapshot({ enabled: true, frequency: 1 }, 41n, 42n)).toBe(true);
  });

  it('is false when no events were added or the revision went backwards', () => {
    expect(shouldSnapshot(every3, 3n, 3n)).toBe(false);
    expect(shouldSnapshot(every3, 6n, 2n)).toBe(false);
  });

  it('is false when snapshots are disabled', () => {
    expect(shouldSnapshot({ enabled: false, frequency: 3 }, 2n, 3n)).toBe(false);
  });

  it('works beyond the safe integer range', () => {
    const big = 9_007_199_254_740_993n * 3n;
    expect(shouldSnapshot(every3, big - 1n, big)).toBe(true);
    expect(shouldSnapshot(every3, big, big + 1n)).toBe(false);
  });

  it('refuses a frequency that is not a positive integer', () => {
    expect(() => shouldSnapshot({ enabled: true, frequency: 0 }, 0n, 1n)).toThrow(InvalidArgumentError);
    expect(() => shouldSnapshot({ enabled: true, frequency: 2.5 }, 0n, 1n)).toThrow(InvalidArgumentError);
  });
});

import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '@chiefofstate/core';
import { checkSnapshotPolicy, shouldSnapshot } from './snapshot-policy.js';

describe('shouldSnapshot', () => {
  const every3 = { enabled: true, frequency: 3 };

  it('is true exactly when a multiple of the frequency is reached one event at a time', () => {
    const hits = [];
    for (let r = 1; r <= 10; r++) if (shouldSnapshot(every3, r - 1, r)) hits.push(r);
    expect(hits).toEqual([3, 6, 9]);
  });

  it('counts a multi-event jump across a multiple, and not one that stays between multiples', () => {
    expect(shouldSnapshot(every3, 2, 4)).toBe(true); // crosses 3
    expect(shouldSnapshot(every3, 1, 3)).toBe(true); // lands on 3
    expect(shouldSnapshot(every3, 3, 5)).toBe(false); // 3 was already covered
    expect(shouldSnapshot(every3, 4, 5)).toBe(false);
    expect(shouldSnapshot(every3, 0, 100)).toBe(true);
    expect(shouldSnapshot(every3, 5, 6)).toBe(true);
    expect(shouldSnapshot(every3, 6, 8)).toBe(false);
  });

  it('snapshots after every event with frequency 1', () => {
    expect(shouldSnapshot({ enabled: true, frequency: 1 }, 0, 1)).toBe(true);
    expect(shouldSnapshot({ enabled: true, frequency: 1 }, 41, 42)).toBe(true);
  });

  it('is false when no events were added or the revision went backwards', () => {
    expect(shouldSnapshot(every3, 3, 3)).toBe(false);
    expect(shouldSnapshot(every3, 6, 2)).toBe(false);
  });

  it('is false when snapshots are disabled, whatever the frequency', () => {
    expect(shouldSnapshot({ enabled: false, frequency: 3 }, 2, 3)).toBe(false);
    expect(checkSnapshotPolicy({ enabled: false, frequency: 0 })).toEqual({ enabled: false, frequency: 0 });
  });

  it('refuses an enabled policy whose frequency is not a positive integer', () => {
    expect(() => checkSnapshotPolicy({ enabled: true, frequency: 0 })).toThrow(InvalidArgumentError);
    expect(() => checkSnapshotPolicy({ enabled: true, frequency: 2.5 })).toThrow(InvalidArgumentError);
  });
});

import { describe, expect, it } from 'vitest';
import { backoffMs, decideOnFailure, DEFAULT_RETRY } from './failure-policy.js';

const retry = { maxRetries: 2, initialBackoffMs: 100, maxBackoffMs: 1000 };

describe('decideOnFailure', () => {
  it('stops or skips at once for STOP and SKIP', () => {
    expect(decideOnFailure('STOP', 0, retry)).toBe('stop');
    expect(decideOnFailure('SKIP', 0, retry)).toBe('skip');
  });

  it('retries REPLAY_* maxRetries times, then stops or skips', () => {
    expect([0, 1, 2].map((attempt) => decideOnFailure('REPLAY_STOP', attempt, retry))).toEqual(['retry', 'retry', 'stop']);
    expect([0, 1, 2].map((attempt) => decideOnFailure('REPLAY_SKIP', attempt, retry))).toEqual(['retry', 'retry', 'skip']);
  });

  it('has documented defaults', () => {
    expect(DEFAULT_RETRY).toEqual({ maxRetries: 5, initialBackoffMs: 200, maxBackoffMs: 10_000 });
  });
});

describe('backoffMs', () => {
  it('doubles from the initial delay up to the cap', () => {
    const middle = () => 0.5;
    expect([0, 1, 2, 3, 4, 40].map((n) => backoffMs(n, retry, middle))).toEqual([100, 200, 400, 800, 1000, 1000]);
  });

  it('jitters by at most 20% either way', () => {
    expect(backoffMs(1, retry, () => 0)).toBe(160);
    expect(backoffMs(1, retry, () => 0.999999)).toBe(240);
  });
});

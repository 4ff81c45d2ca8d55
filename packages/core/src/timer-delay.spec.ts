import { describe, expect, it } from 'vitest';
import { MAX_TIMER_MS, timerDelay } from './timer-delay.js';

describe('timerDelay', () => {
  it('keeps delays a timer can hold and caps longer ones', () => {
    expect(timerDelay(0)).toBe(0);
    expect(timerDelay(5000)).toBe(5000);
    expect(timerDelay(MAX_TIMER_MS)).toBe(MAX_TIMER_MS);
    expect(timerDelay(30 * 24 * 3600 * 1000)).toBe(MAX_TIMER_MS);
  });
});

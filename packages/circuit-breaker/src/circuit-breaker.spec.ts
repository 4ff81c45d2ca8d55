import { CircuitOpenError } from '@chiefofstate/core';
import { describe, expect, it } from 'vitest';
import { createCircuitBreaker, type BreakerState } from './circuit-breaker.js';

function setUp(overrides: { maxFailures?: number; callTimeoutMs?: number; resetTimeoutMs?: number } = {}) {
  let now = 1000;
  const changes: Array<[BreakerState, BreakerState]> = [];
  const breaker = createCircuitBreaker({
    name: 'write handler 10.0.0.5:50051',
    maxFailures: overrides.maxFailures ?? 3,
    callTimeoutMs: overrides.callTimeoutMs ?? 2000,
    resetTimeoutMs: overrides.resetTimeoutMs ?? 10_000,
    clock: { now: () => now },
    onStateChange: (state, previous) => changes.push([previous, state]),
  });
  const fail = (times: number) => {
    for (let i = 0; i < times; i++) breaker.acquire().failed();
  };
  return { breaker, changes, fail, advance: (ms: number) => (now += ms) };
}

function refusal(run: () => unknown): CircuitOpenError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(CircuitOpenError);
    return error as CircuitOpenError;
  }
  throw new Error('expected the breaker to refuse');
}

describe('circuit breaker', () => {
  it('stays closed below maxFailures consecutive failures; a success starts the count again', () => {
    const { breaker, fail } = setUp();
    fail(2);
    breaker.acquire().succeeded();
    fail(2);
    expect(breaker.stats()).toEqual({ state: 'closed', consecutiveFailures: 2, opened: 0, rejected: 0 });
  });

  it('opens at maxFailures and refuses at once, saying when the trial call comes', () => {
    const { breaker, changes, fail, advance } = setUp();
    fail(3);
    expect(breaker.state()).toBe('open');
    expect(changes).toEqual([['closed', 'open']]);
    advance(4000);
    const error = refusal(() => breaker.acquire());
    expect(error.retryAfterMs).toBe(6000);
    expect(error.code).toBe('COS_CIRCUIT_OPEN');
    expect(error.message).toContain('write handler 10.0.0.5:50051');
    expect(error.publicMessage).not.toContain('10.0.0.5');
    expect(breaker.stats()).toMatchObject({ state: 'open', opened: 1, rejected: 1 });
  });

  it('half-opens after the reset timeout: one trial call, the others refused meanwhile; its success closes it', () => {
    const { breaker, changes, fail, advance } = setUp();
    fail(3);
    advance(9999);
    expect(breaker.state()).toBe('open');
    advance(1);
    expect(breaker.state()).toBe('half_open');
    const trial = breaker.acquire();
    expect(refusal(() => breaker.acquire()).retryAfterMs).toBe(0);
    trial.succeeded();
    expect(breaker.stats()).toMatchObject({ state: 'closed', consecutiveFailures: 0 });
    breaker.acquire().succeeded();
    expect(changes).toEqual([
      ['closed', 'open'],
      ['open', 'half_open'],
      ['half_open', 'closed'],
    ]);
  });

  it('opens again for another reset timeout when the trial call fails', () => {
    const { breaker, fail, advance } = setUp();
    fail(3);
    advance(10_000);
    breaker.acquire().failed();
    expect(breaker.state()).toBe('open');
    advance(5000);
    expect(refusal(() => breaker.acquire()).retryAfterMs).toBe(5000);
    advance(5000);
    expect(breaker.state()).toBe('half_open');
    expect(breaker.stats().opened).toBe(2);
  });

  it('lets another trial through when the trial call was given up by its caller', () => {
    const { breaker, fail, advance } = setUp();
    fail(3);
    advance(10_000);
    breaker.acquire().released();
    expect(breaker.state()).toBe('half_open');
    breaker.acquire().succeeded();
    expect(breaker.state()).toBe('closed');
  });

  it('ignores outcomes of calls started before the state changed', () => {
    const { breaker, fail, advance } = setUp({ maxFailures: 2 });
    const slow = breaker.acquire();
    fail(2);
    // the slow call started while closed answers while open: it neither closes nor counts
    slow.succeeded();
    expect(breaker.state()).toBe('open');
    advance(10_000);
    const trial = breaker.acquire();
    const late = slow;
    late.failed();
    trial.succeeded();
    expect(breaker.state()).toBe('closed');
    // a permit reports once: a second report is ignored
    const once = breaker.acquire();
    once.failed();
    once.failed();
    expect(breaker.stats().consecutiveFailures).toBe(1);
  });

  it("gives each call the caller's deadline, at most the call timeout", () => {
    const { breaker } = setUp({ callTimeoutMs: 2000 });
    expect(breaker.acquire().timeoutMs).toBe(2000);
    expect(breaker.acquire(500).timeoutMs).toBe(500);
    expect(breaker.acquire(60_000).timeoutMs).toBe(2000);
  });

  it('opens at once with maxFailures 1', () => {
    const { breaker, fail } = setUp({ maxFailures: 1 });
    fail(1);
    expect(breaker.state()).toBe('open');
  });
});

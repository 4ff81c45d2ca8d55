import { CircuitOpenError } from '@chiefofstate/core';

export type BreakerState = 'closed' | 'open' | 'half_open';

/** Monotonic time in ms (tests pass a fake one; default `performance.now()`). */
export interface BreakerClock {
  now(): number;
}

export interface CircuitBreakerOptions {
  /** names the callee in messages (the log), e.g. `write handler 10.0.0.5:50051` */
  readonly name: string;
  /** what a caller outside may be told when refused; default CircuitOpenError's sentence */
  readonly publicMessage?: string;
  /** consecutive failures that open the breaker, >= 1 */
  readonly maxFailures: number;
  /** the longest a call may take, ms: each permit's timeoutMs is at most this */
  readonly callTimeoutMs: number;
  /** how long it stays open before one trial call goes through, ms */
  readonly resetTimeoutMs: number;
  readonly clock?: BreakerClock;
  /** every change of state, e.g. for the log */
  readonly onStateChange?: (state: BreakerState, previous: BreakerState) => void;
}

/** The right to make one call; tell the breaker how it ended, exactly once. */
export interface BreakerPermit {
  /** the call's deadline: the caller's (when given), at most the breaker's call timeout */
  readonly timeoutMs: number;
  succeeded(): void;
  failed(): void;
  /** the call ended in a way that says nothing about the callee (the caller gave up) */
  released(): void;
}

export interface BreakerStats {
  readonly state: BreakerState;
  readonly consecutiveFailures: number;
  /** times it opened since start */
  readonly opened: number;
  /** calls refused at once since start */
  readonly rejected: number;
}

export interface CircuitBreaker {
  /**
   * A permit for one call, or CircuitOpenError at once: while open, and while half-open with
   * its trial call in flight.
   */
  acquire(timeoutMs?: number): BreakerPermit;
  state(): BreakerState;
  stats(): BreakerStats;
}

const systemClock: BreakerClock = { now: () => performance.now() };

/**
 * Closed: calls go through; `maxFailures` failures in a row open it. Open: every call is refused
 * at once (CircuitOpenError) for `resetTimeoutMs`. Then half-open: one trial call goes through
 * (the others are still refused); its success closes the breaker, its failure opens it again
 * for another `resetTimeoutMs`. An outcome reported after the state changed (a call started
 * before the breaker opened) is ignored, so a slow old success cannot close it.
 */
export function createCircuitBreaker(options: CircuitBreakerOptions): CircuitBreaker {
  const { name, maxFailures, callTimeoutMs, resetTimeoutMs, onStateChange } = options;
  const clock = options.clock ?? systemClock;
  let current: BreakerState = 'closed';
  /** bumped at each change of state: outcomes of older permits are ignored */
  let generation = 0;
  let failures = 0;
  let openedAt = 0;
  let trialInFlight = false;
  let opened = 0;
  let rejected = 0;

  const moveTo = (next: BreakerState) => {
    const previous = current;
    if (previous === next) return;
    current = next;
    generation++;
    trialInFlight = false;
    if (next === 'open') {
      openedAt = clock.now();
      opened++;
    }
    if (next === 'closed') failures = 0;
    onStateChange?.(next, previous);
  };

  const state = (): BreakerState => {
    if (current === 'open' && clock.now() - openedAt >= resetTimeoutMs) moveTo('half_open');
    return current;
  };

  const refuse = (retryAfterMs: number): CircuitOpenError => {
    rejected++;
    const when = retryAfterMs > 0 ? `a trial call in ${Math.ceil(retryAfterMs)} ms` : 'a trial call is in flight';
    return new CircuitOpenError(`${name}: circuit breaker open after ${failures} failed calls in a row; ${when}`, retryAfterMs, {
      ...(options.publicMessage !== undefined ? { publicMessage: options.publicMessage } : {}),
    });
  };

  return {
    acquire(timeoutMs) {
      const now = state();
      if (now === 'open') throw refuse(Math.max(0, openedAt + resetTimeoutMs - clock.now()));
      if (now === 'half_open') {
        if (trialInFlight) throw refuse(0);
        trialInFlight = true;
      }
      const issuedIn = generation;
      const trial = now === 'half_open';
      let settled = false;
      const settle = (outcome: 'success' | 'failure' | 'none') => {
        if (settled) return;
        settled = true;
        if (issuedIn !== generation) return;
        if (outcome === 'none') {
          if (trial) trialInFlight = false;
        } else if (outcome === 'success') {
          if (trial) moveTo('closed');
          else failures = 0;
        } else {
          failures++;
          if (trial || failures >= maxFailures) moveTo('open');
        }
      };
      return {
        timeoutMs: timeoutMs === undefined ? callTimeoutMs : Math.min(timeoutMs, callTimeoutMs),
        succeeded: () => settle('success'),
        failed: () => settle('failure'),
        released: () => settle('none'),
      };
    },
    state,
    stats: () => ({ state: state(), consecutiveFailures: failures, opened, rejected }),
  };
}

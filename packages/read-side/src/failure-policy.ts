/**
 * What a read side does when its handler fails on an event (successful=false, an error or a
 * timeout). The same names as @chiefofstate/config's FailurePolicy.
 */
export type FailurePolicy = 'STOP' | 'SKIP' | 'REPLAY_STOP' | 'REPLAY_SKIP';

export interface RetryOptions {
  /** retries after the first failed attempt, for REPLAY_STOP and REPLAY_SKIP */
  readonly maxRetries: number;
  /** delay before the first retry; doubled for each next one */
  readonly initialBackoffMs: number;
  /** the longest delay between two attempts */
  readonly maxBackoffMs: number;
}

/**
 * Defaults: 5 retries after 0.2, 0.4, 0.8, 1.6 and 3.2 s (about 6 s in all, ±20% jitter) before
 * a REPLAY_* read side gives up on the event (stops the shard, or skips the event). Enough to
 * ride out a handler restart, short enough that a poison event is reported promptly.
 */
export const DEFAULT_RETRY: RetryOptions = { maxRetries: 5, initialBackoffMs: 200, maxBackoffMs: 10_000 };

export type FailureDecision = 'retry' | 'skip' | 'stop';

/** The decision after failed attempt number `attempt` (0 for the first attempt). */
export function decideOnFailure(policy: FailurePolicy, attempt: number, retry: RetryOptions): FailureDecision {
  switch (policy) {
    case 'STOP':
      return 'stop';
    case 'SKIP':
      return 'skip';
    case 'REPLAY_STOP':
      return attempt < retry.maxRetries ? 'retry' : 'stop';
    case 'REPLAY_SKIP':
      return attempt < retry.maxRetries ? 'retry' : 'skip';
  }
}

/** Delay before retry number `retry` (0 for the first), exponential, capped, with ±20% jitter. */
export function backoffMs(retry: number, options: Pick<RetryOptions, 'initialBackoffMs' | 'maxBackoffMs'>, random = Math.random): number {
  const base = Math.min(options.maxBackoffMs, options.initialBackoffMs * 2 ** Math.min(retry, 30));
  return Math.round(base * (0.8 + 0.4 * random()));
}

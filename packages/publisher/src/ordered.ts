import type { BrokerMessage } from './ports.js';

/** A batch publication that failed; its `accepted` leading messages were acknowledged all the same. */
export interface PublishFailure extends Error {
  readonly accepted: number;
}

/** `reason` as a PublishFailure with that many leading messages acknowledged. */
export function publishFailure(reason: unknown, accepted: number): PublishFailure {
  const error = reason instanceof Error ? reason : new Error(String(reason));
  return Object.assign(new Error(error.message, { cause: error }), { accepted });
}

/**
 * Publishes a batch with `publishOne`: the messages of one key one after the other (each only
 * once the previous one was acknowledged), different keys side by side. Rejects with the first
 * failure once every started publication has settled, so nothing is left in flight, as a
 * PublishFailure saying how many leading messages of the batch were acknowledged.
 */
export function publishOrdered(batch: readonly BrokerMessage[], publishOne: (message: BrokerMessage) => Promise<void>): Promise<void> {
  return publishOrderedWith(batch, (message, done) => {
    publishOne(message).then(
      () => done(),
      (error: unknown) => done(error ?? new Error('publish failed')),
    );
  });
}

/**
 * publishOrdered for a client that reports each acknowledgement to a callback: `send` calls
 * `done` once per message, with a reason (not null or undefined) when it failed. No promise per message: at tens of
 * thousands of messages a second their allocation and resumption cost more than the bookkeeping.
 */
export function publishOrderedWith(
  batch: readonly BrokerMessage[],
  send: (message: BrokerMessage, done: (error?: unknown) => void) => void,
): Promise<void> {
  const count = batch.length;
  if (count === 0) return Promise.resolve();
  // each message's next of the same key (-1: its key's last), and each key's first
  const next = new Int32Array(count).fill(-1);
  const lastOfKey = new Map<string, number>();
  const firsts: number[] = [];
  for (let index = 0; index < count; index++) {
    const key = batch[index]!.key;
    const previous = lastOfKey.get(key);
    if (previous === undefined) firsts.push(index);
    else next[previous] = index;
    lastOfKey.set(key, index);
  }
  const acknowledged = new Uint8Array(count);
  return new Promise<void>((resolve, reject) => {
    let chains = firsts.length;
    let failure: { reason: unknown } | undefined;
    const chainEnded = () => {
      if (--chains > 0) return;
      if (failure) reject(publishFailure(failure.reason, acknowledged.indexOf(0)));
      else resolve();
    };
    const start = (first: number) => {
      // a client that answers synchronously goes round this loop instead of recursing
      for (let index = first; index >= 0; ) {
        let synchronous = true;
        let answered: { error: unknown } | undefined;
        const current = index;
        const done = (error?: unknown) => {
          if (answered) return;
          answered = { error };
          if (!synchronous) settled(current, error);
        };
        try {
          send(batch[current]!, done);
        } catch (error) {
          done(error ?? new Error('publish failed'));
        }
        synchronous = false;
        if (!answered) return;
        index = advance(current, answered.error);
      }
    };
    /** the next message of the chain to send, or -1 when the chain has ended */
    const advance = (index: number, error: unknown): number => {
      if (error !== undefined && error !== null) {
        failure ??= { reason: error };
        chainEnded();
        return -1;
      }
      acknowledged[index] = 1;
      const following = next[index]!;
      if (following < 0) chainEnded();
      return following;
    };
    const settled = (index: number, error: unknown) => {
      const following = advance(index, error);
      if (following >= 0) start(following);
    };
    for (const first of firsts) start(first);
  });
}

/** Rejects with a timeout error when `promise` has not settled within `ms`. */
export function withTimeout<T>(promise: Promise<T>, ms: number | undefined, what: string): Promise<T> {
  if (ms === undefined || !Number.isFinite(ms)) return promise;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no acknowledgement within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

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
 * Where each key's publications stand across batches published side by side (a publisher may
 * hand over its next batch while the previous one is still being acknowledged): a key's messages
 * in a later batch start only once its messages in the earlier one were acknowledged, and not at
 * all when one of them failed. One per sink; a batch published without it stands alone.
 */
export interface KeyOrder {
  /** keys with a chain of messages not yet ended, each with that chain's end */
  readonly chains: Map<string, ChainEnd>;
}

interface ChainEnd {
  ended: boolean;
  failure: { readonly reason: unknown } | undefined;
  /** the chain of the same key in a later batch, waiting for this one to end */
  then: ((failure: { readonly reason: unknown } | undefined) => void) | undefined;
}

export function createKeyOrder(): KeyOrder {
  return { chains: new Map() };
}

/**
 * Publishes a batch with `publishOne`: the messages of one key one after the other (each only
 * once the previous one was acknowledged), different keys side by side. Rejects with the first
 * failure once every started publication has settled, so nothing is left in flight, as a
 * PublishFailure saying how many leading messages of the batch were acknowledged. With `order`,
 * each key also waits for its messages of batches published before (see KeyOrder).
 */
export function publishOrdered(
  batch: readonly BrokerMessage[],
  publishOne: (message: BrokerMessage) => Promise<void>,
  order?: KeyOrder,
): Promise<void> {
  return publishOrderedWith(
    batch,
    (message, done) => {
      publishOne(message).then(
        () => done(),
        (error: unknown) => done(error ?? new Error('publish failed')),
      );
    },
    order,
  );
}

/**
 * publishOrdered for a client that reports each acknowledgement to a callback: `send` calls
 * `done` once per message, with a reason (not null or undefined) when it failed. No promise per
 * message: at tens of thousands of messages a second their allocation and resumption cost more
 * than the bookkeeping.
 */
export function publishOrderedWith(
  batch: readonly BrokerMessage[],
  send: (message: BrokerMessage, done: (error?: unknown) => void) => void,
  order?: KeyOrder,
): Promise<void> {
  const count = batch.length;
  if (count === 0) return Promise.resolve();
  // each message's next of the same key (-1: its key's last), its key's chain, and each chain's first
  const next = new Int32Array(count).fill(-1);
  const chainOf = new Int32Array(count);
  const lastOfKey = new Map<string, number>();
  const firsts: number[] = [];
  for (let index = 0; index < count; index++) {
    const key = batch[index]!.key;
    const previous = lastOfKey.get(key);
    if (previous === undefined) {
      chainOf[index] = firsts.length;
      firsts.push(index);
    } else {
      next[previous] = index;
      chainOf[index] = chainOf[previous]!;
    }
    lastOfKey.set(key, index);
  }
  const acknowledged = new Uint8Array(count);
  return new Promise<void>((resolve, reject) => {
    let chains = firsts.length;
    let failure: { reason: unknown } | undefined;
    const ends: (ChainEnd | undefined)[] = order ? new Array<ChainEnd | undefined>(firsts.length) : [];
    const chainEnded = (chain: number, error: unknown) => {
      const end = ends[chain];
      if (end) {
        end.ended = true;
        if (error !== undefined) end.failure = { reason: error };
        const key = batch[firsts[chain]!]!.key;
        if (order!.chains.get(key) === end) order!.chains.delete(key);
        const then = end.then;
        end.then = undefined;
        then?.(end.failure);
      }
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
        chainEnded(chainOf[index]!, error);
        return -1;
      }
      acknowledged[index] = 1;
      const following = next[index]!;
      if (following < 0) chainEnded(chainOf[index]!, undefined);
      return following;
    };
    const settled = (index: number, error: unknown) => {
      const following = advance(index, error);
      if (following >= 0) start(following);
    };
    /** a chain whose key failed in an earlier batch: ends at once, nothing sent */
    const refuse = (chain: number, reason: unknown) => {
      failure ??= { reason };
      chainEnded(chain, reason);
    };
    // every chain registers its end before any starts, so a later batch finds them all
    const waits: (ChainEnd | undefined)[] = [];
    if (order) {
      for (let chain = 0; chain < firsts.length; chain++) {
        const key = batch[firsts[chain]!]!.key;
        const prior = order.chains.get(key);
        waits.push(prior);
        const end: ChainEnd = { ended: false, failure: undefined, then: undefined };
        ends[chain] = end;
        order.chains.set(key, end);
      }
    }
    for (let chain = 0; chain < firsts.length; chain++) {
      const first = firsts[chain]!;
      const prior = waits[chain];
      if (prior === undefined || (prior.ended && prior.failure === undefined)) start(first);
      else if (prior.ended) refuse(chain, prior.failure!.reason);
      else prior.then = (failed) => (failed ? refuse(chain, failed.reason) : start(first));
    }
  });
}

/**
 * publishOrderedWith over a connection that may still be opening: the batch takes its place in
 * each key's order at once (behind the batches handed over before it, see KeyOrder), and a
 * message sent before `opening` settles waits for it, failing with it.
 */
export function publishOrderedOn<L>(
  batch: readonly BrokerMessage[],
  opening: Promise<L>,
  send: (link: L, message: BrokerMessage, done: (error?: unknown) => void) => void,
  order?: KeyOrder,
): Promise<void> {
  let opened: { readonly link: L } | undefined;
  const ready = opening.then((link) => {
    opened = { link };
    return link;
  });
  ready.catch(() => {}); // reported by each message waiting for it
  return publishOrderedWith(
    batch,
    (message, done) => {
      if (opened) send(opened.link, message, done);
      else ready.then((link) => send(link, message, done), done);
    },
    order,
  );
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

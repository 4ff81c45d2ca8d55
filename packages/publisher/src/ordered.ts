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
export async function publishOrdered(
  batch: readonly BrokerMessage[],
  publishOne: (message: BrokerMessage) => Promise<void>,
): Promise<void> {
  if (batch.length === 1) return publishOne(batch[0]!).catch((error: unknown) => Promise.reject(publishFailure(error, 0)));
  const byKey = new Map<string, number[]>();
  for (let index = 0; index < batch.length; index++) {
    const key = batch[index]!.key;
    const list = byKey.get(key);
    if (list) list.push(index);
    else byKey.set(key, [index]);
  }
  const acknowledged = new Uint8Array(batch.length);
  let failure: { reason: unknown } | undefined;
  await Promise.all(
    [...byKey.values()].map(async (indexes) => {
      try {
        for (const index of indexes) {
          await publishOne(batch[index]!);
          acknowledged[index] = 1;
        }
      } catch (error) {
        failure ??= { reason: error };
      }
    }),
  );
  if (failure) throw publishFailure(failure.reason, acknowledged.indexOf(0));
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

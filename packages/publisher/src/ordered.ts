import type { BrokerMessage } from './ports.js';

/**
 * Publishes a batch with `publishOne`: the messages of one key one after the other (each only
 * once the previous one was acknowledged), different keys side by side. Rejects with the first
 * failure once every started publication has settled, so nothing is left in flight.
 */
export async function publishOrdered(
  batch: readonly BrokerMessage[],
  publishOne: (message: BrokerMessage) => Promise<void>,
): Promise<void> {
  if (batch.length === 1) return publishOne(batch[0]!);
  const byKey = new Map<string, BrokerMessage[]>();
  for (const message of batch) {
    const list = byKey.get(message.key);
    if (list) list.push(message);
    else byKey.set(message.key, [message]);
  }
  const results = await Promise.allSettled(
    [...byKey.values()].map(async (messages) => {
      for (const message of messages) await publishOne(message);
    }),
  );
  const failed = results.find((result) => result.status === 'rejected');
  if (failed) throw failed.reason;
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

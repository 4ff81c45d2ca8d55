import * as grpc from '@grpc/grpc-js';

/**
 * Calls again while the answer is UNAVAILABLE (nothing was written), as a client retries, for at
 * most `ms`: a replica started after another was SIGKILLed takes the dead one's shards only once
 * their leases expire, which can outlast one command's deadline. UNAVAILABLE is a thrown grpc-js
 * error, or an outcome `unavailable` recognises; the last one is returned or thrown.
 */
export async function whileUnavailable<T>(call: () => Promise<T>, unavailable: (outcome: T) => boolean = () => false, ms = 30_000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    try {
      const outcome = await call();
      if (!unavailable(outcome) || Date.now() > until) return outcome;
    } catch (error) {
      if ((error as grpc.ServiceError).code !== grpc.status.UNAVAILABLE || Date.now() > until) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

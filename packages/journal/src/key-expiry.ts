import { sql } from 'kysely';
import { InvalidArgumentError } from '@chiefofstate/core';
import type { Database } from '@chiefofstate/postgres';

export interface KeyExpiryOptions {
  readonly database: Database;
  /** how long a key stays (COS_IDEMPOTENCY_RETENTION), ms */
  readonly retentionMs: number;
  /** time between two rounds, ms. Default min(retention / 4, 60 s), at least 1 s */
  readonly intervalMs?: number;
  /** keys one statement deletes at most. Default 500 */
  readonly batchSize?: number;
  /** statements one round runs at most (the rest waits for the next round). Default 20 */
  readonly maxBatchesPerRound?: number;
  /** told how many keys each statement removed (metrics) */
  readonly onExpired?: (count: number) => void;
  /** a round that failed (the database down...): the next round tries again */
  readonly onError?: (error: unknown) => void;
}

export interface KeyExpiry {
  /** One round now (tests, or an operator's nudge): the keys it removed. */
  runOnce(): Promise<number>;
  /** Stops the rounds; waits for the one running. */
  close(): Promise<void>;
}

/**
 * Removes idempotency keys older than the retention window in the background, in small
 * statements of their own: each deletes at most `batchSize` rows in its own short transaction,
 * without the appends' lock, and skips rows another replica's expiry is deleting (SKIP LOCKED),
 * so neither appends nor the other replicas wait for it. Several replicas may run it at once.
 */
export function startKeyExpiry(options: KeyExpiryOptions): KeyExpiry {
  const { database, retentionMs } = options;
  if (!(retentionMs > 0)) throw new InvalidArgumentError(`retentionMs must be positive, got ${retentionMs}`);
  const batchSize = options.batchSize ?? 500;
  const maxBatches = options.maxBatchesPerRound ?? 20;
  const intervalMs = options.intervalMs ?? Math.max(1000, Math.min(retentionMs / 4, 60_000));
  const db = database.kysely;
  let running: Promise<number> | undefined;
  let closed = false;

  const deleteBatch = async (): Promise<number> => {
    const result = await sql`
      DELETE FROM cos_idempotency_keys AS k
       USING (SELECT entity_id, key FROM cos_idempotency_keys
               WHERE recorded_at < now() - ${retentionMs} * interval '1 millisecond'
               ORDER BY recorded_at
               LIMIT ${batchSize}
                 FOR UPDATE SKIP LOCKED) AS old
       WHERE k.entity_id = old.entity_id AND k.key = old.key`.execute(db);
    return Number(result.numAffectedRows ?? 0n);
  };

  const round = async (): Promise<number> => {
    let removed = 0;
    for (let i = 0; i < maxBatches && !closed; i++) {
      // known down: the next round tries again
      if (!database.available()) break;
      const count = await deleteBatch();
      if (count > 0) options.onExpired?.(count);
      removed += count;
      if (count < batchSize) break;
      // let other work of this process (appends) run between two statements
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    return removed;
  };

  const runOnce = (): Promise<number> => {
    running ??= round().finally(() => (running = undefined));
    return running;
  };

  const timer = setInterval(() => {
    runOnce().catch((error: unknown) => options.onError?.(error));
  }, intervalMs);
  timer.unref();

  return {
    runOnce,
    async close() {
      closed = true;
      clearInterval(timer);
      await running?.catch(() => {});
    },
  };
}

import type { StreamState } from './stream-state.js';

/*
 * A stream's offset commits. While a stream delivers, commits are spaced by commitIntervalMs
 * (each covering everything delivered meanwhile), so a fast catch-up costs a few commits per
 * second per stream instead of one per event; a flush (end of a batch, idle, stop) commits at
 * once. One commit is in flight at a time, compare-and-set from the last committed value.
 */

/** Starts committing what was delivered, unless a commit loop already runs. */
export function scheduleCommit(s: StreamState): void {
  s.committing ??= commitLoop(s).finally(() => (s.committing = undefined));
}

/** Waits until everything delivered is committed (or found moved); throws a database failure. */
export async function flush(s: StreamState): Promise<void> {
  s.urgent = true;
  s.commitWaiter?.();
  try {
    await flushNow(s);
  } finally {
    s.urgent = false;
  }
}

async function flushNow(s: StreamState): Promise<void> {
  for (;;) {
    if (s.committing) await s.committing;
    if (s.commitFailure !== undefined) {
      const error = s.commitFailure;
      s.commitFailure = undefined;
      throw error;
    }
    if (s.committed >= s.cursor || s.moved) return;
    scheduleCommit(s);
  }
}

async function commitLoop(s: StreamState): Promise<void> {
  const { readSideId, shard, offsets, logger, stats, commitIntervalMs } = s.options;
  while (s.committed < s.cursor && !s.moved) {
    const wait = s.lastCommitAt + commitIntervalMs - performance.now();
    if (wait > 0 && !s.urgent) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          s.commitWaiter = undefined;
          resolve();
        }, wait);
        s.commitWaiter = () => {
          clearTimeout(timer);
          s.commitWaiter = undefined;
          resolve();
        };
      });
      continue;
    }
    s.lastCommitAt = performance.now();
    const target = s.cursor;
    try {
      if (await offsets.commitIf(readSideId, shard, s.committed, target)) {
        s.committed = target;
        stats.position = target;
      } else {
        logger.info({ ...s.where, expected: String(s.committed) }, 'read side offset moved elsewhere; continuing from the stored one');
        s.moved = true;
        s.recheck = true;
      }
    } catch (error) {
      s.commitFailure = error;
      return;
    }
  }
}

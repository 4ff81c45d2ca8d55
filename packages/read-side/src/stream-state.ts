import type { JournalEventRecord, ReleaseReason } from './ports.js';
import type { StreamWorkerOptions } from './stream-worker.js';

/**
 * What the parts of one stream worker (its loop, deliveries and commits) share: its options and
 * where the stream stands. Created once per worker; the parts are plain functions taking it.
 */
export interface StreamState {
  readonly options: StreamWorkerOptions;
  /** the stream's fields in every log line */
  readonly where: { readonly readSideId: string; readonly shard: number };
  /** what this worker knows is stored */
  committed: bigint;
  /** the last event delivered (or skipped by the policy) */
  cursor: bigint;
  /** new events may be in the journal */
  dirty: boolean;
  /** re-read the stored offset and pause flag */
  recheck: boolean;
  /** a commit found the offset moved elsewhere: stop committing until re-read */
  moved: boolean;
  /** a restart was signalled: re-apply it once no commit of this worker is in flight */
  restarted: boolean;
  stopping: ReleaseReason | undefined;
  paused: boolean;
  /** when the stored offset and pause flag were last read (performance.now()) */
  rowReadAt: number;
  /** the next page, read while this one is delivered (a full page: more is likely to follow) */
  ahead: { readonly after: bigint; readonly page: Promise<readonly JournalEventRecord[]> } | undefined;
  // ---- commits (stream-commits.ts) ----
  committing: Promise<void> | undefined;
  commitFailure: unknown;
  lastCommitAt: number;
  /** a flush waits: commit at once */
  urgent: boolean;
  /** ends the wait between two commits */
  commitWaiter: (() => void) | undefined;
  // ---- sleeps ----
  /** asks the sleep in progress whether to end (see sleep) */
  waiter: (() => void) | undefined;
}

export function createStreamState(options: StreamWorkerOptions): StreamState {
  return {
    options,
    where: { readSideId: options.readSideId, shard: options.shard },
    committed: 0n,
    cursor: 0n,
    dirty: true,
    recheck: true,
    moved: false,
    restarted: false,
    stopping: undefined,
    paused: false,
    rowReadAt: Number.NEGATIVE_INFINITY,
    ahead: undefined,
    committing: undefined,
    commitFailure: undefined,
    lastCommitAt: Number.NEGATIVE_INFINITY,
    urgent: false,
    commitWaiter: undefined,
    waiter: undefined,
  };
}

/** Something the worker waits for may have happened (new events, a control signal, a stop). */
export function poke(s: StreamState): void {
  s.waiter?.();
}

/** Sleeps `ms`, or less when `interrupt()` becomes true (checked whenever the worker is poked). */
export function sleep(s: StreamState, ms: number, interrupt: () => boolean): Promise<void> {
  return new Promise<void>((resolve) => {
    if (interrupt()) return resolve();
    const finish = () => {
      clearTimeout(timer);
      s.waiter = undefined;
      resolve();
    };
    const timer = setTimeout(finish, ms);
    s.waiter = () => {
      if (interrupt()) finish();
    };
  });
}

/** The sleep of a stream between deliveries: until a control signal or a stop. */
export function interrupted(s: StreamState): boolean {
  return s.recheck || s.stopping !== undefined;
}

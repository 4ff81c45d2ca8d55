import { InvalidArgumentError, NotFoundError, type Logger } from '@chiefofstate/core';
import { controlPayload, READ_SIDE_CONTROL_CHANNEL } from './engine.js';
import type { JournalReader, OffsetPort } from './ports.js';
import type { ControlAction } from './stream-worker.js';

export interface ReadSideManagerOptions {
  /** the read sides that can be managed (the enabled ones); others are NOT_FOUND */
  readonly readSideIds: readonly string[];
  readonly numShards: number;
  readonly offsets: OffsetPort;
  /** to find the next unprocessed event of a shard (skip) */
  readonly journal: JournalReader;
  /** this process's engine, told at once */
  readonly engine?: {
    readonly instanceId: string;
    control(readSideId: string, shard: number | undefined, action: ControlAction): void;
  };
  /** NOTIFY on the offsets' database, for the engines of other processes */
  readonly notify?: (channel: string, payload: string) => Promise<void>;
  readonly logger?: Pick<Logger, 'warn'>;
}

export interface ShardPosition {
  readonly shard: number;
  /** journal position of the last processed event; 0n when nothing was processed */
  readonly position: bigint;
}

/** What ReadSideManagerService does, on the stored offsets (so it acts on every process). */
export interface ReadSideManager {
  readonly numShards: number;
  /** Offsets of every shard, in shard order. */
  latestOffsets(readSideId: string): Promise<ShardPosition[]>;
  latestOffset(readSideId: string, shard: number): Promise<ShardPosition>;
  /** Clears the offsets (of one shard, or all) so the read side replays from the start; lifts stops. */
  restart(readSideId: string, shard?: number): Promise<void>;
  /** Stored pause: survives restarts, holds on every process. */
  pause(readSideId: string, shard?: number): Promise<void>;
  /** Clears the stored pause and lifts stops. */
  resume(readSideId: string, shard?: number): Promise<void>;
  /**
   * Skips exactly the next unprocessed event of the shard (of each shard), by compare-and-set
   * on its offset, and lifts stops. Returns whether an event was skipped (a shard with nothing
   * unprocessed is left as it is).
   */
  skip(readSideId: string, shard?: number): Promise<boolean>;
}

/** Attempts of a skip whose compare-and-set lost to a stream committing at the same time. */
const SKIP_ATTEMPTS = 10;

export function createReadSideManager(options: ReadSideManagerOptions): ReadSideManager {
  const { numShards, offsets, journal } = options;
  const known = new Set(options.readSideIds);

  const checkReadSide = (readSideId: string) => {
    if (readSideId === '') throw new InvalidArgumentError('read_side_id is empty');
    if (!known.has(readSideId)) throw new NotFoundError(`read side ${JSON.stringify(readSideId)} is not configured`);
  };
  const checkShard = (shard: number) => {
    if (!Number.isInteger(shard) || shard < 0 || shard >= numShards) {
      throw new InvalidArgumentError(`cluster_shard_number ${shard} is out of range 0..${numShards - 1}`);
    }
  };
  const check = (readSideId: string, shard: number | undefined) => {
    checkReadSide(readSideId);
    if (shard !== undefined) checkShard(shard);
  };

  /** Tells this process's engine and, through NOTIFY, the others'. */
  const signal = async (readSideId: string, shard: number | undefined, action: ControlAction) => {
    options.engine?.control(readSideId, shard, action);
    try {
      await options.notify?.(READ_SIDE_CONTROL_CHANNEL, controlPayload(readSideId, shard, action, options.engine?.instanceId));
    } catch (error) {
      // the change is stored; other processes see offsets and pause flags on their next poll
      options.logger?.warn({ readSideId, shard, err: error }, 'read side control signal not sent');
    }
  };

  const skipOne = async (readSideId: string, shard: number): Promise<boolean> => {
    for (let attempt = 0; attempt < SKIP_ATTEMPTS; attempt++) {
      const { position } = await offsets.get(readSideId, shard);
      const [next] = await journal.readShard({ shard, afterPosition: position, limit: 1 });
      if (!next) return false;
      if (await offsets.commitIf(readSideId, shard, position, next.position)) return true;
    }
    return false;
  };

  return {
    numShards,

    async latestOffsets(readSideId) {
      check(readSideId, undefined);
      const rows = await offsets.list(readSideId, numShards);
      return rows.map((row) => ({ shard: row.shard, position: row.position }));
    },

    async latestOffset(readSideId, shard) {
      check(readSideId, shard);
      const row = await offsets.get(readSideId, shard);
      return { shard, position: row.position };
    },

    async restart(readSideId, shard) {
      check(readSideId, shard);
      await offsets.reset(readSideId, shard);
      await signal(readSideId, shard, 'restart');
    },

    async pause(readSideId, shard) {
      check(readSideId, shard);
      if (shard === undefined) {
        // rows missing so far are created paused, the others are set
        await offsets.ensure(readSideId, numShards, { paused: true });
        await offsets.setPaused(readSideId, true);
      } else {
        await offsets.setPaused(readSideId, true, shard);
      }
      await signal(readSideId, shard, 'pause');
    },

    async resume(readSideId, shard) {
      check(readSideId, shard);
      if (shard === undefined) {
        await offsets.ensure(readSideId, numShards, { paused: false });
        await offsets.setPaused(readSideId, false);
      } else {
        await offsets.setPaused(readSideId, false, shard);
      }
      await signal(readSideId, shard, 'resume');
    },

    async skip(readSideId, shard) {
      check(readSideId, shard);
      let skipped = false;
      for (const s of shard === undefined ? Array.from({ length: numShards }, (_, i) => i) : [shard]) {
        if (await skipOne(readSideId, s)) skipped = true;
      }
      await signal(readSideId, shard, 'skip');
      return skipped;
    },
  };
}

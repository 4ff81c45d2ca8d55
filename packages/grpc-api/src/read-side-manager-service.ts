import type { Context } from '@opentelemetry/api';
import type { HandlerContext, ServiceImpl } from '@connectrpc/connect';
import { InvalidArgumentError } from '@chiefofstate/core';
import type { ReadSideManagerService } from '@chiefofstate/protocol';
import { callTraceContext } from './server-tracing.js';
import { failCall } from './status.js';

/** What the service needs of the read sides (satisfied by @chiefofstate/read-side's ReadSideManager). */
export interface ReadSideManagerPort {
  /** Offsets of every shard, in shard order; position 0n when nothing was processed. */
  latestOffsets(readSideId: string): Promise<readonly { shard: number; position: bigint }[]>;
  latestOffset(readSideId: string, shard: number): Promise<{ shard: number; position: bigint }>;
  restart(readSideId: string, shard?: number): Promise<void>;
  pause(readSideId: string, shard?: number): Promise<void>;
  resume(readSideId: string, shard?: number): Promise<void>;
  /** Whether an event was skipped. */
  skip(readSideId: string, shard?: number): Promise<boolean>;
}

export interface ReadSideManagerServiceOptions {
  readonly manager: ReadSideManagerPort;
  /** observes each failed call (logging, metrics); never throws */
  readonly onError?: (method: string, error: unknown, traceContext: Context | undefined) => void;
}

/** Largest shard number that can be meant (COS_NUM_SHARDS is at most 10000); anything above is refused here. */
const MAX_SHARD = 2n ** 31n - 1n;

/**
 * chief_of_state.v1.ReadSideManagerService over Connect. Unknown read side ids are NOT_FOUND and
 * shard numbers outside 0..num_shards-1 INVALID_ARGUMENT (both decided by the manager, mapped by
 * toConnectError). SkipOffset answers `successful: false` when there was nothing to skip.
 */
export function createReadSideManagerService(options: ReadSideManagerServiceOptions): ServiceImpl<typeof ReadSideManagerService> {
  const { manager, onError } = options;
  const call = async <T>(ctx: HandlerContext, method: string, run: () => Promise<T>): Promise<T> => {
    try {
      return await run();
    } catch (error) {
      throw failCall(error, onError && ((failure) => onError(method, failure, ctx.values.get(callTraceContext))));
    }
  };
  const shardOf = (value: bigint): number => {
    if (value > MAX_SHARD) throw new InvalidArgumentError(`cluster_shard_number ${value} is out of range`);
    return Number(value);
  };
  const done = async (run: Promise<unknown>) => {
    await run;
    return { successful: true };
  };

  return {
    getLatestOffset: (request, ctx) =>
      call(ctx, 'GetLatestOffset', async () => ({
        offsets: (await manager.latestOffsets(request.readSideId)).map(({ shard, position }) => ({
          clusterShardNumber: BigInt(shard),
          offset: position,
        })),
      })),
    getLatestOffsetByShard: (request, ctx) =>
      call(ctx, 'GetLatestOffsetByShard', async () => {
        const { shard, position } = await manager.latestOffset(request.readSideId, shardOf(request.clusterShardNumber));
        return { offsets: { clusterShardNumber: BigInt(shard), offset: position } };
      }),
    restartReadSide: (request, ctx) => call(ctx, 'RestartReadSide', () => done(manager.restart(request.readSideId))),
    restartReadSideByShard: (request, ctx) =>
      call(ctx, 'RestartReadSideByShard', () => done(manager.restart(request.readSideId, shardOf(request.clusterShardNumber)))),
    pauseReadSide: (request, ctx) => call(ctx, 'PauseReadSide', () => done(manager.pause(request.readSideId))),
    pauseReadSideByShard: (request, ctx) =>
      call(ctx, 'PauseReadSideByShard', () => done(manager.pause(request.readSideId, shardOf(request.clusterShardNumber)))),
    resumeReadSide: (request, ctx) => call(ctx, 'ResumeReadSide', () => done(manager.resume(request.readSideId))),
    resumeReadSideByShard: (request, ctx) =>
      call(ctx, 'ResumeReadSideByShard', () => done(manager.resume(request.readSideId, shardOf(request.clusterShardNumber)))),
    skipOffset: (request, ctx) => call(ctx, 'SkipOffset', async () => ({ successful: await manager.skip(request.readSideId) })),
    skipOffsetByShard: (request, ctx) =>
      call(ctx, 'SkipOffsetByShard', async () => ({
        successful: await manager.skip(request.readSideId, shardOf(request.clusterShardNumber)),
      })),
  };
}

import { describe, expect, it } from 'vitest';
import { ShuttingDownError } from '@chiefofstate/core';
import { createDeferredManager } from './deferred-manager.js';
import type { ReadSideManager } from './manager.js';

describe('createDeferredManager', () => {
  it('refuses calls with ShuttingDownError until set, forwards them after, and refuses again when unset', async () => {
    const deferred = createDeferredManager();
    await expect(deferred.manager.pause('x')).rejects.toBeInstanceOf(ShuttingDownError);
    const seen: string[] = [];
    const real: Omit<ReadSideManager, 'numShards'> = {
      latestOffsets: async () => [{ shard: 0, position: 3n }],
      latestOffset: async (_id, shard) => ({ shard, position: 4n }),
      restart: async (id, shard) => void seen.push(`restart ${id} ${shard}`),
      pause: async (id, shard) => void seen.push(`pause ${id} ${shard}`),
      resume: async (id, shard) => void seen.push(`resume ${id} ${shard}`),
      skip: async () => true,
    };
    deferred.set(real);
    expect(await deferred.manager.latestOffsets('x')).toEqual([{ shard: 0, position: 3n }]);
    expect(await deferred.manager.latestOffset('x', 2)).toEqual({ shard: 2, position: 4n });
    await deferred.manager.pause('x', 1);
    await deferred.manager.resume('x');
    await deferred.manager.restart('x', 0);
    expect(await deferred.manager.skip('x')).toBe(true);
    expect(seen).toEqual(['pause x 1', 'resume x undefined', 'restart x 0']);
    deferred.set(undefined);
    await expect(deferred.manager.latestOffsets('x')).rejects.toBeInstanceOf(ShuttingDownError);
  });
});

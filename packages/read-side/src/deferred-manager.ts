import { ShuttingDownError } from '@chiefofstate/core';
import type { ReadSideManager } from './manager.js';

/** The manager methods ReadSideManagerService calls. */
export type ReadSideManagerCalls = Omit<ReadSideManager, 'numShards'>;

/**
 * A manager to register with the gRPC server before the read sides exist (the port opens first,
 * so health probes answer while the store migrates): its calls fail with ShuttingDownError
 * (UNAVAILABLE) until `set` gives it the real one, and again after `set(undefined)`.
 */
export function createDeferredManager(): { readonly manager: ReadSideManagerCalls; set(target: ReadSideManagerCalls | undefined): void } {
  let target: ReadSideManagerCalls | undefined;
  const current = (): ReadSideManagerCalls => {
    if (!target) throw new ShuttingDownError('read sides are starting or stopping');
    return target;
  };
  return {
    manager: {
      latestOffsets: async (id) => current().latestOffsets(id),
      latestOffset: async (id, shard) => current().latestOffset(id, shard),
      restart: async (id, shard) => current().restart(id, shard),
      pause: async (id, shard) => current().pause(id, shard),
      resume: async (id, shard) => current().resume(id, shard),
      skip: async (id, shard) => current().skip(id, shard),
    },
    set(next) {
      target = next;
    },
  };
}

import { FencedError, shardOf, type Logger } from '@chiefofstate/core';
import type { LocalEntities, ShardFences, ShardOwners } from './ports.js';

/** A shard lease of this replica: its epoch, and whether the journal's fence holds it yet. */
export interface ShardLease {
  readonly epoch: bigint;
  fenced: boolean;
  /** the fence being raised; undefined after a failure (the next call tries again) */
  fencing: Promise<void> | undefined;
}

export interface ShardLeasesOptions {
  readonly local: LocalEntities;
  readonly owners: ShardOwners;
  readonly fences: ShardFences;
  readonly numShards: number;
  /** the lease stream of a shard */
  readonly streamOf: (shard: number) => string;
  readonly releaseWaitMs: number;
  readonly logger: Logger;
}

/** The entity shards this replica holds, as the router needs them. */
export interface ShardLeases {
  /**
   * The lease to run a call of `shard` here with, and the fence to wait for first: an owned
   * shard, or one being given up while the coordinator still holds it. Undefined: not here.
   */
  runHere(shard: number): { readonly lease: ShardLease; readonly fenced: Promise<void> | undefined } | undefined;
  /** the shard's lease when its entities may be kept in memory: owned, fenced, still held */
  cacheable(shard: number): ShardLease | undefined;
  /** the epoch this replica's appends of the shard carry: fenced, held (being given up too) */
  epochOf(shard: number): bigint | undefined;
  /** a later lease fenced `lease`: stop owning the shard at once (the coordinator learns later) */
  superseded(shard: number, lease: ShardLease): void;
  count(): number;
  acquire(shard: number, epoch: bigint): void;
  /** resolves once the shard's busy entities are done, or after releaseWaitMs */
  release(shard: number): Promise<void>;
}

/**
 * Owned shards and their fences. A shard acquired raises its fence in the journal at once; its
 * entities run here only after that, so the previous owner's writes are either committed before
 * (and read) or refused. A shard being given up still runs its calls here, uncached, with its
 * epoch, until its busy entities are done: safe even if that outlasts the lease, since the next
 * owner's epoch fences its appends.
 */
export function createShardLeases(options: ShardLeasesOptions): ShardLeases {
  const { local, owners, fences, numShards, streamOf, releaseWaitMs, logger } = options;
  const owned = new Map<number, ShardLease>();
  const releasing = new Map<number, ShardLease>();
  const held = (shard: number) => owners.ownerOf(streamOf(shard))?.self === true;
  const evict = (shard: number) => local.evict((entityId) => shardOf(entityId, numShards) === shard);

  const superseded = (shard: number, lease: ShardLease) => {
    if (owned.get(shard) !== lease) return;
    owned.delete(shard);
    logger.warn({ shard, epoch: String(lease.epoch) }, 'another replica took this shard over and fenced its appends; giving it up');
    evict(shard).catch(() => {});
  };

  /** Resolves once the shard's fence holds this lease's epoch; rejects when it cannot yet. */
  const fenced = (shard: number, lease: ShardLease): Promise<void> | undefined => {
    if (lease.fenced) return undefined;
    lease.fencing ??= fences.fenceShard(shard, lease.epoch).then(
      () => {
        lease.fenced = true;
      },
      (error: unknown) => {
        lease.fencing = undefined;
        if (error instanceof FencedError) superseded(shard, lease);
        else logger.warn({ shard, err: error }, 'could not fence the previous owner of an acquired shard; the next call tries again');
        throw error;
      },
    );
    return lease.fencing;
  };

  return {
    runHere(shard) {
      const lease = owned.get(shard) ?? (releasing.has(shard) && held(shard) ? releasing.get(shard) : undefined);
      return lease && { lease, fenced: fenced(shard, lease) };
    },

    cacheable(shard) {
      const lease = owned.get(shard);
      return lease?.fenced && held(shard) ? lease : undefined;
    },

    epochOf(shard) {
      const lease = owned.get(shard) ?? releasing.get(shard);
      return lease?.fenced && held(shard) ? lease.epoch : undefined;
    },

    superseded,

    count: () => owned.size,

    acquire(shard, epoch) {
      const lease: ShardLease = { epoch, fenced: false, fencing: undefined };
      owned.set(shard, lease);
      // at once, so the first call rarely waits; a failure is retried by the next call
      fenced(shard, lease)?.catch(() => {});
    },

    async release(shard) {
      // From now on its entities are not kept here, nor new calls taken once the coordinator
      // lets the lease go; the next owner starts once the ones in flight are done (or, for a
      // lost lease, at once: its epoch fences this one's appends).
      const lease = owned.get(shard);
      owned.delete(shard);
      if (lease !== undefined) releasing.set(shard, lease);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([evict(shard), new Promise<void>((resolve) => (timer = setTimeout(resolve, releaseWaitMs)))]);
      clearTimeout(timer);
      if (releasing.get(shard) === lease) releasing.delete(shard);
    },
  };
}

import type { Any } from '@bufbuild/protobuf/wkt';
import type { CommandRequest, EntityState, OutgoingCallOptions } from '@chiefofstate/core';

/** This replica's entities (satisfied by @chiefofstate/entity's runtime, built with `retain`). */
export interface LocalEntities {
  processCommand(request: CommandRequest): Promise<EntityState>;
  /** `deadline` (epoch ms): the store is read until then at most */
  getState(entityId: string, options?: { readonly deadline?: number }): Promise<EntityState>;
  /** drops the cached state of the entities selected; resolves when none of them is busy */
  evict(matches: (entityId: string) => boolean): Promise<void>;
}

/** Who holds a shard's stream now (satisfied by @chiefofstate/leases' lease coordinator). */
export interface ShardOwners {
  /** not `self` for a lease of this process whose renewal is overdue (it may be another's now) */
  ownerOf(stream: string): { readonly address: string | undefined; readonly self: boolean } | undefined;
  /** Told that the owner of `stream` refused the connection: it may be gone, worth checking before the next round. */
  ownerUnreachable?(stream: string): void;
}

/** The journal's shard fences (satisfied by @chiefofstate/journal's journal). */
export interface ShardFences {
  /**
   * Resolves once appends with a lease epoch below `epoch` can no longer commit; FencedError
   * (@chiefofstate/core) when a later lease already raised the fence higher.
   */
  fenceShard(shard: number, epoch: bigint): Promise<void>;
}

/** Options of a call to a peer (@chiefofstate/handler-client's call options are wider). */
export type PeerCall = OutgoingCallOptions;

/**
 * The other replicas' ChiefOfStateService, by address (satisfied by @chiefofstate/handler-client's
 * peer clients). A peer's failure status must reach the caller as it was; a peer that could not
 * be reached before the call was sent must throw core's PeerUnreachableError.
 */
export interface PeerPort {
  processCommand(
    address: string,
    request: { entityId: string; command?: Any | undefined },
    call: PeerCall,
  ): Promise<Partial<EntityState>>;
  getState(address: string, request: { entityId: string }, call: PeerCall): Promise<Partial<EntityState>>;
}

import { InternalError, PeerUnreachableError, assertValidEntityId, shardOf } from '@chiefofstate/core';
import type { Header } from '@chiefofstate/protocol';
import type {
  CommandRequest,
  EntityState,
  GetStateOptions,
  LocalEntities,
  Logger,
  PeerCall,
  PeerPort,
  ShardOwners,
} from './ports.js';

const SHARD_STREAM_PREFIX = 'entity-shard/';

/** The lease stream of an entity shard (no `#`, so it never collides with a read side's). */
export function entityShardStream(shard: number): string {
  return `${SHARD_STREAM_PREFIX}${shard}`;
}

/** The lease streams of all entity shards, in shard order. */
export function entityShardStreams(numShards: number): string[] {
  return Array.from({ length: numShards }, (_, shard) => entityShardStream(shard));
}

/** Why a stream is given up (the lease coordinator's reasons). */
export type ShardReleaseReason = 'rebalanced' | 'closing' | 'lost';

/** How a call was routed, for metrics. */
export type RouteOutcome =
  /** sent to the replica owning the shard, which answered (with any status) */
  | 'forwarded'
  /** the owner refused the connection; handled here instead */
  | 'owner_unreachable';

export interface EntityRouterOptions {
  readonly local: LocalEntities;
  readonly peers: PeerPort;
  /** who holds each shard (the entity shard streams' lease coordinator, once started) */
  readonly owners: ShardOwners;
  /** COS_NUM_SHARDS */
  readonly numShards: number;
  /**
   * Longest a shard given up waits for its busy entities before the next owner may start, ms;
   * default 5000. Commands still running then are fenced by the journal's revision check.
   */
  readonly releaseWaitMs?: number;
  /**
   * After acquiring a shard, how long before its entities are kept in memory, ms; default 2000
   * (two lease rounds). Until every other replica has run a round and learned the new owner, it
   * may still handle a call for the shard itself (uncached); a copy cached here meanwhile could
   * miss that write. Calls are handled here in the meantime, each reading the store. No warm-up
   * when this replica is the only one (`owners.members()` is 1): a replica joining later learns
   * the owners in its first round, before it serves.
   */
  readonly warmupMs?: number;
  readonly logger?: Logger;
  /** each call handed to another replica */
  readonly onRoute?: (method: 'ProcessCommand' | 'GetState', outcome: RouteOutcome) => void;
}

export interface EntityRouter {
  /** handles the command here when this replica owns the shard (or nobody does), else forwards it */
  processCommand(request: CommandRequest): Promise<EntityState>;
  getState(entityId: string, options?: GetStateOptions): Promise<EntityState>;
  /** whether this replica owns the entity's shard, so may keep its state in memory (`retain`) */
  retains(entityId: string): boolean;
  /** the entity shards this replica owns now */
  ownedShards(): number;
  /** the lease coordinator's host for the entity shard streams */
  acquired(stream: string): void;
  released(stream: string, reason: ShardReleaseReason): Promise<void>;
}

const noopLogger: Logger = { debug: () => {}, warn: () => {} };

/**
 * Routes each call to the replica that owns the entity's shard. The owner keeps the entity in
 * memory; every other replica forwards to it once (the receiver never forwards again). When no
 * replica owns the shard (a takeover is under way), the owner is unknown or it refused the
 * connection, the call is handled here without keeping the entity in memory: the journal's
 * revision check keeps concurrent writers from both appending on the same revision, so routing
 * only has to be right most of the time, never always.
 */
export function createEntityRouter(options: EntityRouterOptions): EntityRouter {
  const { local, peers, owners, numShards, onRoute } = options;
  const logger = options.logger ?? noopLogger;
  /** owned shards, and when each may start keeping its entities in memory (epoch ms) */
  const owned = new Map<number, number>();
  const releaseWaitMs = options.releaseWaitMs ?? 5000;
  const warmupMs = options.warmupMs ?? 2000;

  /** the owner's address when it is another replica; undefined: handle it here */
  const ownerAddress = (entityId: string, forwardedBy: string | undefined): string | undefined => {
    if (forwardedBy !== undefined) return undefined;
    const shard = shardOf(entityId, numShards);
    if (owned.has(shard)) return undefined;
    const owner = owners.ownerOf(entityShardStream(shard));
    return owner === undefined || owner.self ? undefined : owner.address;
  };

  const forward = async (
    method: 'ProcessCommand' | 'GetState',
    address: string,
    entityId: string,
    send: () => Promise<{ state?: EntityState['state'] | undefined; meta?: EntityState['meta'] | undefined }>,
    here: () => Promise<EntityState>,
  ): Promise<EntityState> => {
    let reply;
    try {
      reply = await send();
    } catch (error) {
      if (!(error instanceof PeerUnreachableError)) {
        onRoute?.(method, 'forwarded');
        throw error;
      }
      onRoute?.(method, 'owner_unreachable');
      logger.debug('the shard owner is unreachable; handling the call here', { entityId, owner: address, err: error });
      return here();
    }
    onRoute?.(method, 'forwarded');
    if (reply.state === undefined || reply.meta === undefined) {
      throw new InternalError(`peer ${address} answered ${method} for ${JSON.stringify(entityId)} without state or meta`);
    }
    return { state: reply.state, meta: reply.meta };
  };

  const callOptions = (call: { signal?: AbortSignal; deadline?: number; traceContext?: CommandRequest['traceContext'] }, headers: Record<string, string>): PeerCall => ({
    headers,
    ...(call.signal ? { signal: call.signal } : {}),
    ...(call.deadline !== undefined ? { timeoutMs: call.deadline - Date.now() } : {}),
    ...(call.traceContext ? { traceContext: call.traceContext } : {}),
  });

  const shardOfStream = (stream: string): number | undefined => {
    if (!stream.startsWith(SHARD_STREAM_PREFIX)) return undefined;
    const shard = Number(stream.slice(SHARD_STREAM_PREFIX.length));
    // only the name entityShardStream gives: Number() also reads '', ' 1', '01', '0x1', '1e0'
    const valid = Number.isInteger(shard) && shard >= 0 && shard < numShards && stream === entityShardStream(shard);
    return valid ? shard : undefined;
  };

  return {
    processCommand(request) {
      try {
        assertValidEntityId(request.entityId);
      } catch (error) {
        return Promise.reject(error);
      }
      const address = ownerAddress(request.entityId, request.forwardedBy);
      if (address === undefined) return local.processCommand(request);
      return forward(
        'ProcessCommand',
        address,
        request.entityId,
        () =>
          peers.processCommand(
            address,
            { entityId: request.entityId, command: request.command },
            callOptions(request, forwardedHeaders(request)),
          ),
        () => local.processCommand(request),
      );
    },

    async getState(entityId, options = {}) {
      assertValidEntityId(entityId);
      const address = ownerAddress(entityId, options.forwardedBy);
      if (address === undefined) return local.getState(entityId);
      return forward(
        'GetState',
        address,
        entityId,
        () => peers.getState(address, { entityId }, callOptions(options, {})),
        () => local.getState(entityId),
      );
    },

    retains(entityId) {
      const cachingFrom = owned.get(shardOf(entityId, numShards));
      return cachingFrom !== undefined && Date.now() >= cachingFrom;
    },

    ownedShards: () => owned.size,

    acquired(stream) {
      const shard = shardOfStream(stream);
      if (shard === undefined) return;
      const alone = owners.members?.() === 1;
      owned.set(shard, alone ? Date.now() : Date.now() + warmupMs);
    },

    async released(stream) {
      const shard = shardOfStream(stream);
      if (shard === undefined) return;
      // From now on its entities are not kept here; the next owner starts once the ones in
      // flight are done (or, for a lost lease, at once: the journal fences stale writes).
      owned.delete(shard);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        local.evict((entityId) => shardOf(entityId, numShards) === shard),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, releaseWaitMs))),
      ]);
      clearTimeout(timer);
    },
  };
}

/**
 * What the owner needs to derive the same propagated and persisted headers from its own
 * request: both sets, as request metadata (binary values base64, as gRPC sends `-bin` headers).
 */
function forwardedHeaders(request: CommandRequest): Record<string, string> {
  const headers: Record<string, string> = { ...request.propagatedHeaders };
  const persisted: Record<string, string[]> = {};
  for (const header of request.persistedHeaders ?? []) (persisted[header.key] ??= []).push(headerText(header));
  for (const [key, values] of Object.entries(persisted)) headers[key] = values.join(', ');
  return headers;
}

function headerText(header: Header): string {
  const { value } = header;
  if (value.case === 'bytesValue') return Buffer.from(value.value).toString('base64');
  return value.case === 'stringValue' ? value.value : '';
}

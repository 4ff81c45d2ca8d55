import {
  FencedError,
  InternalError,
  PeerRefusedError,
  PeerUnreachableError,
  ShuttingDownError,
  UnauthenticatedError,
  assertValidEntityId,
  shardOf,
  silentLogger,
  type CallScope,
  type CommandRequest,
  type EntityState,
  type ForwardingMark,
  type GetStateOptions,
  type IncomingCommandRequest,
  type Logger,
} from '@chiefofstate/core';
import { EXPECTED_REVISION_HEADER, FORWARDED_PROOF_HEADER, IDEMPOTENCY_KEY_HEADER, type Header } from '@chiefofstate/protocol';
import { MAX_FORWARDS, type ForwardingAuth } from './forwarding-auth.js';
import { createShardLeases, type ShardLease, type ShardLeases } from './shard-leases.js';
import type { LocalEntities, PeerCall, PeerPort, ShardFences, ShardOwners } from './ports.js';

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

/** How a call for another replica's shard went, for metrics. */
export type RouteOutcome =
  /** sent to the replica owning the shard, which answered (with any status) */
  | 'forwarded'
  /** the owner refused the connection: a GetState was read from the store here, a ProcessCommand refused */
  | 'owner_unreachable'
  /** the owner refused the call having done nothing (it gave the shard up, or is stopping): likewise */
  | 'owner_refused'
  /** no live owner is known (a takeover is under way) or the call was forwarded enough: likewise */
  | 'no_owner'
  /** a forwarding mark without a valid proof: refused */
  | 'unauthenticated';

type Method = 'ProcessCommand' | 'GetState';

export interface EntityRouterOptions {
  readonly local: LocalEntities;
  readonly peers: PeerPort;
  /** who holds each shard (the entity shard streams' lease coordinator, once started) */
  readonly owners: ShardOwners;
  /** raises a shard's fence when its lease is acquired (the journal) */
  readonly fences: ShardFences;
  /** proves the calls forwarded from here and checks the forwarding mark of those received */
  readonly auth: ForwardingAuth;
  /** this replica's address, as its peer clients send it in the forwarding mark */
  readonly address: string;
  /** COS_NUM_SHARDS */
  readonly numShards: number;
  /**
   * Longest a shard given up waits for its busy entities before the next owner may start, ms;
   * default 5000. Commands still running then are fenced by the next owner's lease epoch.
   */
  readonly releaseWaitMs?: number;
  readonly logger?: Logger;
  /** each call for a shard this replica does not own */
  readonly onRoute?: (method: Method, outcome: RouteOutcome) => void;
}

export interface EntityRouter {
  /** handles the command here when this replica owns the shard, else forwards it to the owner */
  processCommand(request: IncomingCommandRequest): Promise<EntityState>;
  getState(entityId: string, options?: GetStateOptions): Promise<EntityState>;
  /** whether this replica owns the entity's shard, fenced, so may keep its state in memory (`retain`) */
  retains(entityId: string): boolean;
  /** the lease epoch this replica's appends of the entity carry (`fenceOf`); undefined when not the owner */
  fenceOf(entityId: string): bigint | undefined;
  /** the entity shards this replica owns now */
  ownedShards(): number;
  /** the lease coordinator's host for the entity shard streams */
  acquired(stream: string, epoch: bigint): void;
  released(stream: string, reason: ShardReleaseReason): Promise<void>;
}


/** How often a command waiting for its shard's next owner looks again (bounded by its deadline). */
const REROUTE_MS = 100;

/**
 * Routes each call to the replica that owns the entity's shard; only the owner writes it, and
 * only once its lease epoch fenced the previous owner's appends, so the entities it keeps in
 * memory cannot miss a write. Others forward to it, proving with the cluster secret that the
 * call comes from a replica. A receiver that no longer owns the shard forwards it once more at
 * most; a command that finds no reachable owner, or one that refuses it having written nothing
 * (it gave the shard up, or is stopping), is refused retryably (FencedError, PeerUnreachableError
 * or PeerRefusedError, UNAVAILABLE: nothing written), while a GetState is then read from the store
 * here. The caller's own command waits for the next owner instead, within its deadline.
 */
export function createEntityRouter(options: EntityRouterOptions): EntityRouter {
  const { local, peers, owners, auth, address: self, numShards, onRoute } = options;
  const logger = options.logger ?? silentLogger;
  const leases = createShardLeases({
    local,
    owners,
    fences: options.fences,
    numShards,
    streamOf: entityShardStream,
    releaseWaitMs: options.releaseWaitMs ?? 5000,
    logger,
  });

  /** The forwards a received call has had: 0 for a caller's own, else its verified proof's. */
  const forwardsOf = (method: Method, entityId: string, call: ForwardingMark): number => {
    if (call.forwardedBy === undefined) return 0;
    const verdict = auth.verify({ by: call.forwardedBy, method, entityId }, call.forwardProof);
    if (verdict.ok) return verdict.hops;
    onRoute?.(method, 'unauthenticated');
    // what the caller claimed, never the proof
    logger.warn(
      { method, entityId, forwardedBy: call.forwardedBy, reason: verdict.reason },
      'refused a call marked as forwarded by a replica: its proof is not valid',
    );
    throw new UnauthenticatedError(`${method} marked as forwarded by a replica without a valid proof (${verdict.reason})`);
  };

  /** Runs the call here when this replica holds the shard; else where it goes, or why not. */
  const route = (
    entityId: string,
    forwards: number,
  ): { here: NonNullable<ReturnType<ShardLeases['runHere']>> } | { address: string } | { refused: RouteOutcome } => {
    const shard = shardOf(entityId, numShards);
    const here = leases.runHere(shard);
    if (here !== undefined) return { here };
    const owner = owners.ownerOf(entityShardStream(shard));
    if (owner === undefined || owner.self || owner.address === undefined || forwards >= MAX_FORWARDS) return { refused: 'no_owner' };
    return { address: owner.address };
  };

  const proofHeader = (method: Method, entityId: string, forwards: number) => ({
    [FORWARDED_PROOF_HEADER]: auth.prove({ by: self, method, entityId, hops: forwards + 1 }),
  });

  /** A call for a shard owned elsewhere: forwarded, or `fallback` when the owner cannot be reached. */
  const elsewhere = async (
    method: Method,
    entityId: string,
    target: { address: string } | { refused: RouteOutcome },
    forward: (address: string) => Promise<Partial<EntityState>>,
    fallback: (outcome: RouteOutcome, cause: unknown) => Promise<EntityState>,
  ): Promise<EntityState> => {
    if ('refused' in target) {
      onRoute?.(method, target.refused);
      return fallback(target.refused, undefined);
    }
    let reply;
    try {
      reply = await forward(target.address);
    } catch (error) {
      // anything else may have been written there: it reaches the caller as it was
      const outcome = error instanceof PeerUnreachableError ? 'owner_unreachable' : error instanceof PeerRefusedError ? 'owner_refused' : undefined;
      onRoute?.(method, outcome ?? 'forwarded');
      if (outcome === undefined) throw error;
      // it may be dead: the leases find out at once, rather than at their next round
      if (outcome === 'owner_unreachable') owners.ownerUnreachable?.(entityShardStream(shardOf(entityId, numShards)));
      logger.debug({ entityId, owner: target.address, err: error }, 'the shard owner did not take the call');
      return fallback(outcome, error);
    }
    onRoute?.(method, 'forwarded');
    if (reply.state === undefined || reply.meta === undefined) {
      throw new InternalError(`peer ${target.address} answered ${method} for ${JSON.stringify(entityId)} without state or meta`);
    }
    return { state: reply.state, meta: reply.meta };
  };

  const processHere = async (request: CommandRequest, { lease, fenced }: { lease: ShardLease; fenced: Promise<void> | undefined }) => {
    await fenced;
    try {
      return await local.processCommand(request);
    } catch (error) {
      // a later lease took the shard: what this replica keeps of it may be stale
      if (error instanceof FencedError) leases.superseded(shardOf(request.entityId, numShards), lease);
      throw error;
    }
  };

  /** Routes the command once: here, to the owner, or refused retryably. */
  const routeCommand = (request: CommandRequest, forwards: number): Promise<EntityState> => {
    const { entityId } = request;
    const target = route(entityId, forwards);
    if ('here' in target) return processHere(request, target.here);
    return elsewhere(
      'ProcessCommand',
      entityId,
      target,
      (address) =>
        peers.processCommand(
          address,
          { entityId, command: request.command },
          callOptions(request, { ...forwardedHeaders(request), ...proofHeader('ProcessCommand', entityId, forwards) }),
        ),
      (outcome, cause) => {
        // Only the owner writes: a write here could land behind its cache. Nothing was written.
        if (cause instanceof PeerUnreachableError || cause instanceof PeerRefusedError) throw cause;
        throw new FencedError(
          `no replica can take commands for ${JSON.stringify(entityId)} now (${outcome === 'no_owner' ? 'its shard is changing owner' : outcome}); nothing was written, retry`,
        );
      },
    );
  };

  return {
    async processCommand(request) {
      assertValidEntityId(request.entityId);
      const forwards = forwardsOf('ProcessCommand', request.entityId, request);
      // A shard changing owner (a replica stopped or died) has none for a moment, and the one
      // giving it up refuses: the caller's own command waits for the next one, looking again
      // every REROUTE_MS, until its deadline. Only refusals that wrote nothing are sent again.
      for (;;) {
        try {
          return await routeCommand(request, forwards);
        } catch (error) {
          if (!wroteNothing(error) || forwards > 0 || !(await waitToReroute(request))) throw error;
        }
      }
    },

    async getState(entityId, options = {}) {
      assertValidEntityId(entityId);
      const forwards = forwardsOf('GetState', entityId, options);
      const target = route(entityId, forwards);
      if ('here' in target) {
        await target.here.fenced;
        return local.getState(entityId, localRead(options));
      }
      return elsewhere(
        'GetState',
        entityId,
        target,
        (address) => peers.getState(address, { entityId }, callOptions(options, proofHeader('GetState', entityId, forwards))),
        // not kept in memory here: the store has every acknowledged write
        () => local.getState(entityId, localRead(options)),
      );
    },

    retains: (entityId) => leases.cacheable(shardOf(entityId, numShards)) !== undefined,

    // the commands still running on a shard being given up finish with its epoch
    fenceOf: (entityId) => leases.epochOf(shardOf(entityId, numShards)),

    ownedShards: () => leases.count(),

    acquired(stream, epoch) {
      const shard = shardOfStream(stream, numShards);
      if (shard !== undefined) leases.acquire(shard, epoch);
    },

    async released(stream) {
      const shard = shardOfStream(stream, numShards);
      if (shard !== undefined) await leases.release(shard);
    },
  };
}

/** A failure that proves the command was not written anywhere, so it may go to the shard's next owner. */
function wroteNothing(error: unknown): boolean {
  return (
    error instanceof FencedError ||
    error instanceof PeerUnreachableError ||
    error instanceof PeerRefusedError ||
    error instanceof ShuttingDownError
  );
}

/** The shard of an entity shard stream; undefined for any other stream. */
function shardOfStream(stream: string, numShards: number): number | undefined {
  if (!stream.startsWith(SHARD_STREAM_PREFIX)) return undefined;
  const shard = Number(stream.slice(SHARD_STREAM_PREFIX.length));
  // only the name entityShardStream gives: Number() also reads '', ' 1', '01', '0x1', '1e0'
  const valid = Number.isInteger(shard) && shard >= 0 && shard < numShards && stream === entityShardStream(shard);
  return valid ? shard : undefined;
}

function callOptions(call: CallScope, headers: Record<string, string>): PeerCall {
  return {
    headers,
    ...(call.signal ? { signal: call.signal } : {}),
    ...(call.deadline !== undefined ? { timeoutMs: call.deadline - Date.now() } : {}),
    ...(call.traceContext ? { traceContext: call.traceContext } : {}),
  };
}

/**
 * Waits REROUTE_MS unless the call is cancelled or too close to its deadline: the refusal must
 * reach the caller before the deadline does (a margin of REROUTE_MS). Whether it waited.
 */
async function waitToReroute(call: CallScope): Promise<boolean> {
  if (call.signal?.aborted || call.deadline === undefined || Date.now() + 2 * REROUTE_MS >= call.deadline) return false;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(done, REROUTE_MS);
    function done() {
      clearTimeout(timer);
      call.signal?.removeEventListener('abort', done);
      resolve();
    }
    call.signal?.addEventListener('abort', done, { once: true });
  });
  return !call.signal?.aborted;
}

/**
 * What the owner needs to derive the same propagated and persisted headers from its own
 * request: both sets, as request metadata (binary values base64, as gRPC sends `-bin` headers),
 * and the idempotency key and expected revision.
 */
function forwardedHeaders(request: CommandRequest): Record<string, string> {
  const headers: Record<string, string> = { ...request.propagatedHeaders };
  const persisted: Record<string, string[]> = {};
  for (const header of request.persistedHeaders ?? []) (persisted[header.key] ??= []).push(headerText(header));
  for (const [key, values] of Object.entries(persisted)) headers[key] = values.join(', ');
  // retry-safe commands: the owner records and checks them
  if (request.idempotencyKey !== undefined) headers[IDEMPOTENCY_KEY_HEADER] = request.idempotencyKey;
  if (request.expectedRevision !== undefined) headers[EXPECTED_REVISION_HEADER] = request.expectedRevision.toString();
  return headers;
}

function headerText(header: Header): string {
  const { value } = header;
  if (value.case === 'bytesValue') return Buffer.from(value.value).toString('base64');
  return value.case === 'stringValue' ? value.value : '';
}

/** What a local GetState needs of the call: its deadline, which bounds the read of the store. */
function localRead(options: GetStateOptions): { deadline?: number } {
  return options.deadline === undefined ? {} : { deadline: options.deadline };
}

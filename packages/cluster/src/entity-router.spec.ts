import { setTimeout as sleep } from 'node:timers/promises';
import { create } from '@bufbuild/protobuf';
import { StringValueSchema, type Any } from '@bufbuild/protobuf/wkt';
import { ROOT_CONTEXT, createContextKey } from '@opentelemetry/api';
import {
  FencedError,
  HandlerFailedError,
  InternalError,
  InvalidArgumentError,
  CommitOutcomeUnknownError,
  DeadlineExceededError,
  PeerRefusedError,
  PeerUnreachableError,
  ShuttingDownError,
  StoreError,
  UnauthenticatedError,
  shardOf,
  silentLogger,
  type EntityState,
  type IncomingCommandRequest,
} from '@chiefofstate/core';
import { FORWARDED_PROOF_HEADER, HeaderSchema, MetaDataSchema, packAny, type MetaData } from '@chiefofstate/protocol';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  createEntityRouter,
  entityShardStream,
  entityShardStreams,
  type EntityRouterOptions,
  type RouteOutcome,
} from './entity-router.js';
import { createForwardingAuth } from './forwarding-auth.js';
import type { LocalEntities, PeerCall, PeerPort, ShardFences, ShardOwners } from './ports.js';

const NUM_SHARDS = 4;
const SECRET = 'the cluster secret, shared';
const SELF = 'self:9000';
/** the auth of the other replicas (same secret) */
const peerAuth = createForwardingAuth({ secret: SECRET, maxSkewMs: 30_000 });

/** A valid proof of a call `by` forwarded `hops` times. */
function proof(by: string, method: 'ProcessCommand' | 'GetState', entityId: string, hops = 1): string {
  return peerAuth.prove({ by, method, entityId, hops });
}

function str(value: string): Any {
  return packAny(StringValueSchema, create(StringValueSchema, { value }));
}

function meta(entityId: string, revisionNumber: number): MetaData {
  return create(MetaDataSchema, { entityId, revisionNumber });
}

/** The first `count` ids `e-0`, `e-1`, ... whose shard is `shard`. */
function idsInShard(shard: number, count = 1): string[] {
  const ids: string[] = [];
  for (let i = 0; ids.length < count; i++) if (shardOf(`e-${i}`, NUM_SHARDS) === shard) ids.push(`e-${i}`);
  return ids;
}

function idInShard(shard: number): string {
  return idsInShard(shard)[0]!;
}

/** This replica's entities: records what reached it and answers `local:<id>`. */
class FakeLocal implements LocalEntities {
  readonly commands: IncomingCommandRequest[] = [];
  readonly reads: string[] = [];
  readonly evictions: ((entityId: string) => boolean)[] = [];
  /** what evict returns; default: resolves at once */
  evictResult: () => Promise<void> = () => Promise.resolve();

  processCommand(request: IncomingCommandRequest): Promise<EntityState> {
    this.commands.push(request);
    return Promise.resolve({ state: str(`local:${request.entityId}`), meta: meta(request.entityId, 1) });
  }

  getState(entityId: string): Promise<EntityState> {
    this.reads.push(entityId);
    return Promise.resolve({ state: str(`local:${entityId}`), meta: meta(entityId, 1) });
  }

  evict(matches: (entityId: string) => boolean): Promise<void> {
    this.evictions.push(matches);
    return this.evictResult();
  }
}

type PeerReply = { state?: Any | undefined; meta?: MetaData | undefined };

interface PeerCallRecord {
  method: 'ProcessCommand' | 'GetState';
  address: string;
  request: { entityId: string; command?: Any | undefined };
  call: PeerCall;
}

/** The other replicas: records each call; `reply` decides the answer (default `peer:<address>`). */
class FakePeers implements PeerPort {
  readonly calls: PeerCallRecord[] = [];
  reply: (record: PeerCallRecord) => Promise<PeerReply> = (record) =>
    Promise.resolve({ state: str(`peer:${record.address}`), meta: meta(record.request.entityId, 7) });

  processCommand(address: string, request: { entityId: string; command?: Any | undefined }, call: PeerCall) {
    const record: PeerCallRecord = { method: 'ProcessCommand', address, request, call };
    this.calls.push(record);
    return this.reply(record);
  }

  getState(address: string, request: { entityId: string }, call: PeerCall) {
    const record: PeerCallRecord = { method: 'GetState', address, request, call };
    this.calls.push(record);
    return this.reply(record);
  }
}

/** Who holds each shard stream, as the lease coordinator would say. */
class FakeOwners implements ShardOwners {
  readonly owners = new Map<string, { address: string | undefined; self: boolean }>();
  readonly asked: string[] = [];
  readonly unreachable: string[] = [];
  ownerOf(stream: string) {
    this.asked.push(stream);
    return this.owners.get(stream);
  }

  ownerUnreachable(stream: string): void {
    this.unreachable.push(stream);
  }

  set(shard: number, owner: { address: string | undefined; self: boolean } | undefined): void {
    if (owner === undefined) this.owners.delete(entityShardStream(shard));
    else this.owners.set(entityShardStream(shard), owner);
  }
}

/** The journal's fences: records each raise; `result` decides the outcome (default: raised). */
class FakeFences implements ShardFences {
  readonly raised: [number, bigint][] = [];
  result: (shard: number, epoch: bigint) => Promise<void> = () => Promise.resolve();

  fenceShard(shard: number, epoch: bigint): Promise<void> {
    this.raised.push([shard, epoch]);
    return this.result(shard, epoch);
  }
}

function setup(options: Partial<EntityRouterOptions> = {}) {
  const local = new FakeLocal();
  const peers = new FakePeers();
  const owners = new FakeOwners();
  const fences = new FakeFences();
  const routes: [string, RouteOutcome][] = [];
  const warnings: [string, Record<string, unknown> | undefined][] = [];
  const router = createEntityRouter({
    local,
    peers,
    owners,
    fences,
    auth: createForwardingAuth({ secret: SECRET, maxSkewMs: 30_000 }),
    address: SELF,
    numShards: NUM_SHARDS,
    onRoute: (method, outcome) => routes.push([method, outcome]),
    logger: { ...silentLogger, warn: (fields, message) => warnings.push([message ?? '', fields as Record<string, unknown>]) },
    ...options,
  });
  /** what the lease coordinator does on acquiring: it holds the lease, then tells the router */
  const own = async (shard: number, epoch = 1n) => {
    owners.set(shard, { address: SELF, self: true });
    router.acquired(entityShardStream(shard), epoch);
    await Promise.resolve();
  };
  return { router, local, peers, owners, fences, routes, warnings, own };
}

/** What the forwarded headers hold, with the proof checked as the receiving replica does. */
function provenHeaders(call: PeerCall, method: 'ProcessCommand' | 'GetState', entityId: string, hops = 1) {
  const { [FORWARDED_PROOF_HEADER]: given, ...rest } = call.headers ?? {};
  expect(peerAuth.verify({ by: SELF, method, entityId }, given)).toEqual({ ok: true, hops });
  return rest;
}

afterEach(() => {
  vi.useRealTimers();
});

describe('entity shard streams', () => {
  it('names one lease stream per shard', () => {
    expect(entityShardStream(3)).toBe('entity-shard/3');
    expect(entityShardStreams(3)).toEqual(['entity-shard/0', 'entity-shard/1', 'entity-shard/2']);
  });
});

describe('routing ProcessCommand', () => {
  it('handles an entity of a shard this replica owns here, whoever the coordinator names', async () => {
    const { router, local, peers, owners, routes } = setup();
    const id = idInShard(1);
    // the coordinator may still name the previous owner; what this replica acquired wins
    owners.set(1, { address: '10.0.0.2:9000', self: false });
    router.acquired(entityShardStream(1), 1n);
    const request: IncomingCommandRequest = { entityId: id, command: str('open') };
    const reply = await router.processCommand(request);
    expect(reply.state).toEqual(str(`local:${id}`));
    expect(local.commands).toEqual([request]);
    expect(local.commands[0]).toBe(request);
    expect(peers.calls).toEqual([]);
    expect(routes).toEqual([]);
  });

  it('forwards to the owning replica with its address, the headers, the remaining time, the signal and the trace', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(1_000_000);
    const { router, local, peers, owners, routes } = setup();
    const id = idInShard(2);
    owners.set(2, { address: '10.0.0.3:9000', self: false });
    owners.set(1, { address: '10.0.0.9:9000', self: false });
    const signal = new AbortController().signal;
    const traceContext = ROOT_CONTEXT.setValue(createContextKey('test'), 'the caller');
    const command = str('deposit');
    const reply = await router.processCommand({
      entityId: id,
      command,
      propagatedHeaders: { 'x-tenant': 'acme', traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' },
      persistedHeaders: [
        create(HeaderSchema, { key: 'x-user', value: { case: 'stringValue', value: 'alice' } }),
        create(HeaderSchema, { key: 'x-sig-bin', value: { case: 'bytesValue', value: new Uint8Array([0, 255, 1, 2]) } }),
      ],
      signal,
      deadline: 1_000_750,
      traceContext,
    });

    expect(reply).toEqual({ state: str('peer:10.0.0.3:9000'), meta: meta(id, 7) });
    expect(local.commands).toEqual([]);
    expect(routes).toEqual([['ProcessCommand', 'forwarded']]);
    expect(peers.calls).toHaveLength(1);
    const [call] = peers.calls;
    expect(call!.method).toBe('ProcessCommand');
    expect(call!.address).toBe('10.0.0.3:9000');
    expect(call!.request).toEqual({ entityId: id, command });
    expect(provenHeaders(call!.call, 'ProcessCommand', id)).toEqual({
      'x-tenant': 'acme',
      traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
      'x-user': 'alice',
      'x-sig-bin': Buffer.from([0, 255, 1, 2]).toString('base64'),
    });
    expect(call!.call.headers!['x-sig-bin']).toBe('AP8BAg==');
    expect(call!.call.timeoutMs).toBe(750);
    expect(call!.call.signal).toBe(signal);
    expect(call!.call.traceContext).toBe(traceContext);
  });

  it('forwards the idempotency key and the expected revision for the owner to record and check', async () => {
    const { router, peers, owners } = setup();
    const id = idInShard(2);
    owners.set(2, { address: '10.0.0.3:9000', self: false });
    await router.processCommand({ entityId: id, command: str('deposit'), idempotencyKey: 'dep-1', expectedRevision: 0n });
    expect(provenHeaders(peers.calls[0]!.call, 'ProcessCommand', id)).toEqual({
      'x-cos-idempotency-key': 'dep-1',
      'x-cos-expected-revision': '0',
    });
  });

  it('sends no timeout, signal or trace context the caller did not give', async () => {
    const { router, peers, owners } = setup();
    const id = idInShard(0);
    owners.set(0, { address: 'peer-b:9000', self: false });
    await router.processCommand({ entityId: id, command: str('open') });
    expect(Object.keys(peers.calls[0]!.call)).toEqual(['headers']);
    expect(provenHeaders(peers.calls[0]!.call, 'ProcessCommand', id)).toEqual({});
  });

  it('handles a call another replica forwarded here with a valid proof when this replica owns the shard', async () => {
    const { router, local, peers, routes, own } = setup();
    const id = idInShard(3);
    await own(3);
    const request: IncomingCommandRequest = {
      entityId: id,
      command: str('open'),
      forwardedBy: 'peer-a:9000',
      forwardProof: proof('peer-a:9000', 'ProcessCommand', id),
    };
    expect((await router.processCommand(request)).state).toEqual(str(`local:${id}`));
    expect(local.commands).toEqual([request]);
    expect(peers.calls).toEqual([]);
    expect(routes).toEqual([]);
  });

  it('forwards a forwarded call once more when this replica does not own the shard, and refuses it after that', async () => {
    const { router, local, peers, owners, routes } = setup();
    const id = idInShard(3);
    owners.set(3, { address: 'peer-c:9000', self: false });
    const by = 'peer-a:9000';
    await router.processCommand({ entityId: id, command: str('a'), forwardedBy: by, forwardProof: proof(by, 'ProcessCommand', id, 1) });
    expect(peers.calls.map((c) => c.address)).toEqual(['peer-c:9000']);
    expect(provenHeaders(peers.calls[0]!.call, 'ProcessCommand', id, 2)).toEqual({});
    const twice = { entityId: id, command: str('b'), forwardedBy: by, forwardProof: proof(by, 'ProcessCommand', id, 2) };
    await expect(router.processCommand(twice)).rejects.toBeInstanceOf(FencedError);
    expect(peers.calls).toHaveLength(1);
    expect(local.commands).toEqual([]);
    expect(routes).toEqual([
      ['ProcessCommand', 'forwarded'],
      ['ProcessCommand', 'no_owner'],
    ]);
  });

  it('refuses a forwarding mark without a valid proof (UnauthenticatedError): nothing runs or is forwarded, the claim is logged', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(10_000_000);
    const { router, local, peers, owners, routes, warnings, own } = setup();
    const id = idInShard(1);
    await own(1);
    owners.set(2, { address: 'peer-c:9000', self: false });
    const other = idInShard(2);
    const by = 'peer-a:9000';
    const forged = createForwardingAuth({ secret: 'another secret, not ours', maxSkewMs: 30_000 });
    const old = proof(by, 'ProcessCommand', id);
    vi.setSystemTime(10_030_001);
    const cases: [string, IncomingCommandRequest][] = [
      ['no proof', { entityId: id, command: str('x'), forwardedBy: by }],
      ['malformed proof', { entityId: id, command: str('x'), forwardedBy: by, forwardProof: 'v1.1.1.abc' }],
      ['wrong proof', { entityId: id, command: str('x'), forwardedBy: by, forwardProof: forged.prove({ by, method: 'ProcessCommand', entityId: id, hops: 1 }) }],
      ['wrong proof', { entityId: id, command: str('x'), forwardedBy: by, forwardProof: proof(by, 'ProcessCommand', idInShard(0)) }],
      ['wrong proof', { entityId: id, command: str('x'), forwardedBy: 'peer-z:9000', forwardProof: proof(by, 'ProcessCommand', id) }],
      ['wrong proof', { entityId: id, command: str('x'), forwardedBy: by, forwardProof: proof(by, 'GetState', id) }],
      ['proof time outside the allowed clock skew', { entityId: id, command: str('x'), forwardedBy: by, forwardProof: old }],
      ['too many forwards', { entityId: other, command: str('x'), forwardedBy: by, forwardProof: proof(by, 'ProcessCommand', other, 3) }],
    ];
    for (const [reason, request] of cases) {
      const error = await router.processCommand(request).catch((e: unknown) => e);
      expect(error, reason).toBeInstanceOf(UnauthenticatedError);
      expect((error as Error).message).toContain(reason);
    }
    expect(local.commands).toEqual([]);
    expect(peers.calls).toEqual([]);
    expect(routes).toEqual(cases.map(() => ['ProcessCommand', 'unauthenticated']));
    expect(warnings.map(([, fields]) => fields!['reason'])).toEqual(cases.map(([reason]) => reason));
    // what the caller claimed, never the proof
    for (const [, fields] of warnings) expect(Object.keys(fields!).sort()).toEqual(['entityId', 'forwardedBy', 'method', 'reason']);
    expect(await router.getState(id, { forwardedBy: by, forwardProof: 'nonsense' }).catch((e: unknown) => e)).toBeInstanceOf(
      UnauthenticatedError,
    );
    expect(local.reads).toEqual([]);
  });

  it('refuses a command when nobody owns the shard, its owner has no address, or the coordinator names this replica without a lease here', async () => {
    const { router, local, peers, owners, routes } = setup();
    const [nobody, noAddress, self] = [idInShard(0), idInShard(1), idInShard(2)];
    owners.set(1, { address: undefined, self: false });
    owners.set(2, { address: SELF, self: true });
    for (const id of [nobody, noAddress, self]) {
      const error = await router.processCommand({ entityId: id, command: str('open') }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(FencedError);
      expect((error as Error).message).toContain('nothing was written');
    }
    expect(local.commands).toEqual([]);
    expect(peers.calls).toEqual([]);
    expect(routes).toEqual([
      ['ProcessCommand', 'no_owner'],
      ['ProcessCommand', 'no_owner'],
      ['ProcessCommand', 'no_owner'],
    ]);
  });

  it("waits (up to the caller's deadline) for a shard changing owner, then runs the command where the next owner is", async () => {
    vi.useFakeTimers({ now: 1_000_000 });
    const { router, local, peers, owners, own } = setup();
    const [a, b, c] = [idInShard(1), idInShard(2), idInShard(3)];
    owners.set(2, { address: 'peer-b:9000', self: false });
    peers.reply = () => Promise.reject(new PeerUnreachableError('refused'));
    const here = router.processCommand({ entityId: a, command: str('a'), deadline: 1_005_000 });
    const there = router.processCommand({ entityId: b, command: str('b'), deadline: 1_005_000 });
    const never = router.processCommand({ entityId: c, command: str('c'), deadline: 1_000_450 }).catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(1000);
    expect(local.commands).toEqual([]);
    await own(1); // this replica took shard 1 over
    owners.set(2, { address: 'peer-c:9000', self: false }); // another one took shard 2
    peers.reply = (record) => Promise.resolve({ state: str(`peer:${record.address}`), meta: meta(record.request.entityId, 1) });
    await vi.advanceTimersByTimeAsync(100);
    expect((await here).state).toEqual(str(`local:${a}`));
    expect((await there).state).toEqual(str('peer:peer-c:9000'));
    // no owner until the deadline: refused just before it, nothing run
    expect(await never).toBeInstanceOf(FencedError);
    expect(local.commands.map((command) => command.entityId)).toEqual([a]);
  });

  it('refuses a command retryably, never running it here, when the owner refused the connection', async () => {
    const { router, local, peers, owners, routes } = setup();
    const id = idInShard(1);
    owners.set(1, { address: 'peer-b:9000', self: false });
    const unreachable = new PeerUnreachableError('peer peer-b:9000 ProcessCommand: connect ECONNREFUSED');
    peers.reply = () => Promise.reject(unreachable);
    const request: IncomingCommandRequest = { entityId: id, command: str('open'), propagatedHeaders: { 'x-tenant': 'acme' } };
    expect(await router.processCommand(request).catch((e: unknown) => e)).toBe(unreachable);
    expect(peers.calls).toHaveLength(1);
    expect(local.commands).toEqual([]);
    expect(routes).toEqual([['ProcessCommand', 'owner_unreachable']]);
    // the leases are told, to look up at once whether the owner is gone
    expect(owners.unreachable).toEqual([entityShardStream(1)]);
  });

  it('sends a command the owner refused having written nothing (it gave the shard up, is stopping) to the next owner, within the deadline', async () => {
    vi.useFakeTimers({ now: 1_000_000 });
    const { router, local, peers, owners, routes, own } = setup();
    const [a, b] = [idInShard(1), idInShard(2)];
    owners.set(1, { address: 'peer-b:9000', self: false });
    owners.set(2, { address: 'peer-b:9000', self: false });
    // the stopping replica: its lease given up, no owner known to it yet
    peers.reply = () => Promise.reject(new PeerRefusedError('peer peer-b:9000 ProcessCommand refused: no replica can take commands'));
    const here = router.processCommand({ entityId: a, command: str('a'), deadline: 1_005_000 });
    const there = router.processCommand({ entityId: b, command: str('b'), deadline: 1_005_000 });
    await vi.advanceTimersByTimeAsync(350);
    expect(local.commands).toEqual([]);
    // this replica took shard 1 over, another one shard 2
    await own(1);
    owners.set(2, { address: 'peer-c:9000', self: false });
    peers.reply = (record) => Promise.resolve({ state: str(`peer:${record.address}`), meta: meta(record.request.entityId, 1) });
    await vi.advanceTimersByTimeAsync(100);
    expect((await here).state).toEqual(str(`local:${a}`));
    expect((await there).state).toEqual(str('peer:peer-c:9000'));
    expect(local.commands.map((command) => command.entityId)).toEqual([a]);
    expect(peers.calls.at(-1)!.address).toBe('peer-c:9000');
    expect(routes.filter(([, outcome]) => outcome === 'owner_refused').length).toBeGreaterThanOrEqual(4);
    expect(routes.at(-1)).toEqual(['ProcessCommand', 'forwarded']);
  });

  it('refuses a command once its deadline is near when the owner keeps refusing it, and passes a refusal on at once to a replica that forwarded it', async () => {
    vi.useFakeTimers({ now: 1_000_000 });
    const { router, local, peers, owners } = setup();
    const id = idInShard(1);
    owners.set(1, { address: 'peer-b:9000', self: false });
    const refused = new PeerRefusedError('peer peer-b:9000 ProcessCommand refused: shutting down');
    peers.reply = () => Promise.reject(refused);
    const mine = router.processCommand({ entityId: id, command: str('a'), deadline: 1_000_450 }).catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(500);
    expect(await mine).toBe(refused);
    const calls = peers.calls.length;
    expect(calls).toBeGreaterThan(1);
    const forwarded = {
      entityId: id,
      command: str('b'),
      deadline: 1_005_000,
      forwardedBy: 'peer-a:9000',
      forwardProof: proof('peer-a:9000', 'ProcessCommand', id),
    };
    expect(await router.processCommand(forwarded).catch((e: unknown) => e)).toBe(refused);
    expect(peers.calls).toHaveLength(calls + 1);
    expect(local.commands).toEqual([]);
  });

  it('sends a command again only after failures that prove nothing was written, never after one that may have been', async () => {
    vi.useFakeTimers({ now: 1_000_000 });
    const { router, local, peers, owners } = setup();
    const id = idInShard(1);
    owners.set(1, { address: 'peer-b:9000', self: false });
    const maybeWritten = [
      new CommitOutcomeUnknownError('the commit outcome is unknown'),
      new DeadlineExceededError('peer peer-b:9000 ProcessCommand did not answer within 5000 ms'),
      // an UNAVAILABLE of the owner without the refusal mark: its handler, its store...
      new HandlerFailedError(14, 'write handler unavailable'),
      new HandlerFailedError(2, 'stream reset'),
      new Error('connection closed'),
    ];
    for (const failure of maybeWritten) {
      const calls = peers.calls.length;
      peers.reply = () => Promise.reject(failure);
      const call = router.processCommand({ entityId: id, command: str('a'), deadline: Date.now() + 5000 }).catch((e: unknown) => e);
      await vi.advanceTimersByTimeAsync(1000);
      expect(await call).toBe(failure);
      expect(peers.calls).toHaveLength(calls + 1);
    }
    // a shard being given up here whose runtime is stopping: nothing written, sent to the next owner
    const { router: stopping, local: stoppingLocal, owners: stoppingOwners, peers: stoppingPeers, own } = setup();
    await own(1);
    vi.spyOn(stoppingLocal, 'processCommand').mockRejectedValueOnce(new ShuttingDownError('shutting down'));
    const call = stopping.processCommand({ entityId: id, command: str('a'), deadline: Date.now() + 5000 });
    stoppingOwners.set(1, { address: 'peer-c:9000', self: false });
    stopping.released(entityShardStream(1), 'closing').catch(() => {});
    await vi.advanceTimersByTimeAsync(100);
    expect((await call).state).toEqual(str('peer:peer-c:9000'));
    expect(stoppingPeers.calls.map((c) => c.address)).toEqual(['peer-c:9000']);
    expect(local.commands).toEqual([]);
  });

  it('passes any other failure of the owner through unchanged, counted as forwarded, without running it here', async () => {
    const { router, local, owners, peers, routes } = setup();
    const id = idInShard(1);
    owners.set(1, { address: 'peer-b:9000', self: false });
    const detail = { typeUrl: 'type.googleapis.com/x.Y', value: new Uint8Array([1]) };
    const refused = new HandlerFailedError(9, 'insufficient funds', [detail]);
    peers.reply = () => Promise.reject(refused);
    expect(await router.processCommand({ entityId: id, command: str('withdraw') }).catch((e: unknown) => e)).toBe(refused);
    const plain = new Error('stream reset');
    peers.reply = () => Promise.reject(plain);
    expect(await router.processCommand({ entityId: id, command: str('withdraw') }).catch((e: unknown) => e)).toBe(plain);
    expect(local.commands).toEqual([]);
    expect(routes).toEqual([
      ['ProcessCommand', 'forwarded'],
      ['ProcessCommand', 'forwarded'],
    ]);
  });

  it('reports a peer reply without state or meta as InternalError', async () => {
    const { router, local, owners, peers, routes } = setup();
    const id = idInShard(2);
    owners.set(2, { address: 'peer-b:9000', self: false });
    peers.reply = () => Promise.resolve({ meta: meta(id, 1) });
    const noState = await router.processCommand({ entityId: id, command: str('open') }).catch((e: unknown) => e);
    expect(noState).toBeInstanceOf(InternalError);
    expect((noState as Error).message).toContain('peer-b:9000');
    peers.reply = () => Promise.resolve({ state: str('s') });
    const noMeta = await router.processCommand({ entityId: id, command: str('open') }).catch((e: unknown) => e);
    expect(noMeta).toBeInstanceOf(InternalError);
    expect(local.commands).toEqual([]);
    expect(routes).toEqual([
      ['ProcessCommand', 'forwarded'],
      ['ProcessCommand', 'forwarded'],
    ]);
  });

  it('rejects an invalid entity id before routing', async () => {
    const { router, local, owners, peers, routes } = setup();
    for (let shard = 0; shard < NUM_SHARDS; shard++) owners.set(shard, { address: 'peer-b:9000', self: false });
    const empty = await router.processCommand({ entityId: '', command: str('open') }).catch((e: unknown) => e);
    expect(empty).toBeInstanceOf(InvalidArgumentError);
    expect((empty as Error).message).toBe('empty entity ID');
    await expect(router.processCommand({ entityId: 'x'.repeat(256), command: str('open') })).rejects.toBeInstanceOf(
      InvalidArgumentError,
    );
    expect(owners.asked).toEqual([]);
    expect(local.commands).toEqual([]);
    expect(peers.calls).toEqual([]);
    expect(routes).toEqual([]);
  });
});

describe('routing GetState', () => {
  it('reads an entity of an owned shard here', async () => {
    const { router, local, peers, owners } = setup();
    const id = idInShard(0);
    owners.set(0, { address: 'peer-b:9000', self: false });
    router.acquired(entityShardStream(0), 1n);
    expect((await router.getState(id)).state).toEqual(str(`local:${id}`));
    expect(local.reads).toEqual([id]);
    expect(peers.calls).toEqual([]);
  });

  it('forwards to the owner with the remaining time, the signal and the trace context', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(5_000);
    const { router, local, peers, owners, routes } = setup();
    const id = idInShard(3);
    owners.set(3, { address: '[::1]:9001', self: false });
    const signal = new AbortController().signal;
    const traceContext = ROOT_CONTEXT.setValue(createContextKey('test'), 'the caller');
    const reply = await router.getState(id, { signal, deadline: 5_300, traceContext });
    expect(reply).toEqual({ state: str('peer:[::1]:9001'), meta: meta(id, 7) });
    expect(local.reads).toEqual([]);
    expect(peers.calls).toHaveLength(1);
    expect(peers.calls[0]).toMatchObject({ method: 'GetState', address: '[::1]:9001', request: { entityId: id } });
    expect(peers.calls[0]!.call).toMatchObject({ signal, timeoutMs: 300, traceContext });
    expect(provenHeaders(peers.calls[0]!.call, 'GetState', id)).toEqual({});
    expect(peers.calls[0]!.call.signal).toBe(signal);
    expect(peers.calls[0]!.call.traceContext).toBe(traceContext);
    expect(routes).toEqual([['GetState', 'forwarded']]);
  });

  it('reads from the store here when the call was forwarded twice, nobody owns the shard or the owner has no address', async () => {
    const { router, local, peers, owners, routes } = setup();
    owners.set(1, { address: 'peer-b:9000', self: false });
    owners.set(2, { address: undefined, self: false });
    const twice = proof('peer-c:9000', 'GetState', idInShard(1), 2);
    await router.getState(idInShard(1), { forwardedBy: 'peer-c:9000', forwardProof: twice });
    await router.getState(idInShard(0));
    await router.getState(idInShard(2));
    expect(local.reads).toEqual([idInShard(1), idInShard(0), idInShard(2)]);
    expect(peers.calls).toEqual([]);
    expect(routes).toEqual([
      ['GetState', 'no_owner'],
      ['GetState', 'no_owner'],
      ['GetState', 'no_owner'],
    ]);
  });

  it('reads here when the owner refused the call having done nothing (it gave the shard up)', async () => {
    const { router, local, owners, peers, routes } = setup();
    const id = idInShard(1);
    owners.set(1, { address: 'peer-b:9000', self: false });
    peers.reply = () => Promise.reject(new PeerRefusedError('peer peer-b:9000 GetState refused'));
    expect((await router.getState(id)).state).toEqual(str(`local:${id}`));
    expect(local.reads).toEqual([id]);
    expect(routes).toEqual([['GetState', 'owner_refused']]);
  });

  it('falls back to reading here when the owner is unreachable, and passes other failures through', async () => {
    const { router, local, peers, owners, routes } = setup();
    const id = idInShard(1);
    owners.set(1, { address: 'peer-b:9000', self: false });
    peers.reply = () => Promise.reject(new PeerUnreachableError('refused'));
    expect((await router.getState(id)).state).toEqual(str(`local:${id}`));
    expect(local.reads).toEqual([id]);
    const notFound = new HandlerFailedError(5, 'entity not found');
    peers.reply = () => Promise.reject(notFound);
    expect(await router.getState(id).catch((e: unknown) => e)).toBe(notFound);
    peers.reply = () => Promise.resolve({});
    expect(await router.getState(id).catch((e: unknown) => e)).toBeInstanceOf(InternalError);
    expect(local.reads).toEqual([id]);
    expect(routes).toEqual([
      ['GetState', 'owner_unreachable'],
      ['GetState', 'forwarded'],
      ['GetState', 'forwarded'],
    ]);
  });

  it('rejects an empty entity id before routing', async () => {
    const { router, local, owners, peers } = setup();
    await expect(router.getState('')).rejects.toThrow(InvalidArgumentError);
    expect(owners.asked).toEqual([]);
    expect(local.reads).toEqual([]);
    expect(peers.calls).toEqual([]);
  });
});

describe('shard ownership (the lease coordinator host)', () => {
  it('retains exactly the entities of the shards acquired and fenced, while the coordinator still holds them', async () => {
    const { router, owners, own } = setup();
    const [s0, s1, s2] = [idInShard(0), idInShard(1), idInShard(2)];
    expect(router.ownedShards()).toBe(0);
    expect([s0, s1, s2].map((id) => router.retains(id))).toEqual([false, false, false]);

    await own(1);
    await own(2);
    await own(2); // again: still one shard
    expect(router.ownedShards()).toBe(2);
    expect([s0, s1, s2].map((id) => router.retains(id))).toEqual([false, true, true]);
    expect([s0, s1, s2].map((id) => router.fenceOf(id))).toEqual([undefined, 1n, 1n]);
    for (const id of idsInShard(1, 20)) expect(router.retains(id)).toBe(true);
    // the coordinator stopped trusting its lease (renewal overdue): nothing served from memory
    owners.set(2, undefined);
    expect(router.retains(s2)).toBe(false);
    expect(router.fenceOf(s2)).toBeUndefined();
    owners.set(2, { address: SELF, self: true });

    await router.released(entityShardStream(1), 'rebalanced');
    expect(router.ownedShards()).toBe(1);
    expect([s0, s1, s2].map((id) => router.retains(id))).toEqual([false, false, true]);
    await router.released(entityShardStream(2), 'lost');
    expect(router.ownedShards()).toBe(0);
    expect(router.retains(s2)).toBe(false);
  });

  it('fences the previous owner on acquiring a shard, and neither runs nor keeps its entities before the fence holds', async () => {
    const { router, local, fences, owners } = setup();
    const id = idInShard(3);
    let raise!: () => void;
    fences.result = () => new Promise<void>((resolve) => (raise = resolve));
    owners.set(3, { address: SELF, self: true });
    router.acquired(entityShardStream(3), 7n);
    expect(fences.raised).toEqual([[3, 7n]]);
    expect(router.ownedShards()).toBe(1);
    expect(router.retains(id)).toBe(false);
    expect(router.fenceOf(id)).toBeUndefined();
    const reply = router.processCommand({ entityId: id, command: str('a') });
    const read = router.getState(id);
    await sleep(10);
    expect(local.commands).toEqual([]);
    expect(local.reads).toEqual([]);
    raise();
    await reply;
    await read;
    expect(local.commands).toHaveLength(1);
    expect(local.reads).toEqual([id]);
    expect(router.retains(id)).toBe(true);
    expect(router.fenceOf(id)).toBe(7n);
    expect(fences.raised).toHaveLength(1);
  });

  it('gives a shard up when a later lease fenced it already, and retries the fence on the next call after a store failure', async () => {
    const { router, local, fences, own } = setup();
    const id = idInShard(2);
    fences.result = () => Promise.reject(new FencedError('superseded'));
    await own(2, 3n);
    await sleep(0);
    expect(router.ownedShards()).toBe(0);
    expect(local.evictions).toHaveLength(1);
    await expect(router.processCommand({ entityId: id, command: str('a') })).rejects.toBeInstanceOf(FencedError);

    fences.result = () => Promise.reject(new StoreError('down'));
    await own(2, 4n);
    await sleep(0);
    expect(router.ownedShards()).toBe(1);
    await expect(router.processCommand({ entityId: id, command: str('a') })).rejects.toBeInstanceOf(StoreError);
    fences.result = () => Promise.resolve();
    await router.processCommand({ entityId: id, command: str('b') });
    expect(fences.raised).toEqual([
      [2, 3n],
      [2, 4n],
      [2, 4n],
      [2, 4n],
    ]);
    expect(local.commands.map((c) => c.command)).toEqual([str('b')]);
    expect(router.retains(id)).toBe(true);
  });

  it('stops owning a shard whose append was fenced: its entities are evicted and its commands refused retryably', async () => {
    const { router, local, own, routes } = setup();
    const id = idInShard(1);
    await own(1, 2n);
    const fenced = new FencedError('a later lease of its shard fenced it');
    local.processCommand = () => Promise.reject(fenced);
    expect(await router.processCommand({ entityId: id, command: str('a') }).catch((e: unknown) => e)).toBe(fenced);
    expect(router.ownedShards()).toBe(0);
    expect(router.retains(id)).toBe(false);
    expect(local.evictions).toHaveLength(1);
    expect(local.evictions[0]!(id)).toBe(true);
    // the coordinator still names this replica until its next round: refused, not run here
    await expect(router.processCommand({ entityId: id, command: str('b') })).rejects.toBeInstanceOf(FencedError);
    expect(routes).toEqual([['ProcessCommand', 'no_owner']]);
  });

  it('forwards calls for a shard again once it was released to another replica', async () => {
    const { router, local, peers, owners, own } = setup();
    const id = idInShard(3);
    await own(3);
    await router.processCommand({ entityId: id, command: str('a') });
    await router.released(entityShardStream(3), 'rebalanced');
    owners.set(3, { address: 'peer-b:9000', self: false });
    await router.processCommand({ entityId: id, command: str('b') });
    expect(local.commands.map((c) => c.command)).toEqual([str('a')]);
    expect(peers.calls.map((c) => [c.address, c.request.command])).toEqual([['peer-b:9000', str('b')]]);
  });

  it('on release, evicts exactly the entities of that shard', async () => {
    const { router, local } = setup();
    router.acquired(entityShardStream(0), 1n);
    router.acquired(entityShardStream(2), 1n);
    await router.released(entityShardStream(2), 'closing');
    expect(local.evictions).toHaveLength(1);
    const matches = local.evictions[0]!;
    const ids = Array.from({ length: 400 }, (_, i) => `entity-${i}`);
    const selected = ids.filter((id) => matches(id));
    expect(selected).toEqual(ids.filter((id) => shardOf(id, NUM_SHARDS) === 2));
    expect(selected.length).toBeGreaterThan(50);
    expect(selected.length).toBeLessThan(150);
  });

  it('resolves the release only once the eviction is done (busy entities finished)', async () => {
    const { router, local } = setup({ releaseWaitMs: 10_000 });
    let finish!: () => void;
    local.evictResult = () => new Promise<void>((resolve) => (finish = resolve));
    router.acquired(entityShardStream(1), 1n);
    let released = false;
    const release = router.released(entityShardStream(1), 'rebalanced').then(() => (released = true));
    await sleep(30);
    expect(released).toBe(false);
    // the shard is given up at once, not when the eviction ends
    expect(router.retains(idInShard(1))).toBe(false);
    expect(router.ownedShards()).toBe(0);
    const started = performance.now();
    finish();
    await release;
    expect(performance.now() - started).toBeLessThan(1000);
  });

  it('runs the calls of a shard being given up here, uncached, with its epoch, until the release is done', async () => {
    const { router, local, peers, routes, own } = setup({ releaseWaitMs: 10_000 });
    const id = idInShard(1);
    let finish!: () => void;
    local.evictResult = () => new Promise<void>((resolve) => (finish = resolve));
    await own(1, 3n);
    const release = router.released(entityShardStream(1), 'closing');
    expect(router.retains(id)).toBe(false);
    expect(router.ownedShards()).toBe(0);
    expect(router.fenceOf(id)).toBe(3n);
    await router.processCommand({ entityId: id, command: str('during') });
    expect(local.commands.map((c) => c.command)).toEqual([str('during')]);
    finish();
    await release;
    expect(router.fenceOf(id)).toBeUndefined();
    // given up: not run here any more, and the next owner is not known yet
    await expect(router.processCommand({ entityId: id, command: str('after') })).rejects.toBeInstanceOf(FencedError);
    expect(local.commands).toHaveLength(1);
    expect(peers.calls).toEqual([]);
    expect(routes).toEqual([['ProcessCommand', 'no_owner']]);
  });

  it('resolves the release after at most releaseWaitMs when the eviction never ends', async () => {
    const { router, local } = setup({ releaseWaitMs: 80 });
    local.evictResult = () => new Promise<void>(() => {});
    router.acquired(entityShardStream(1), 1n);
    let released = false;
    const started = performance.now();
    const release = router.released(entityShardStream(1), 'closing').then(() => (released = true));
    await sleep(20);
    expect(released).toBe(false);
    await release;
    const elapsed = performance.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(75);
    expect(elapsed).toBeLessThan(1000);
  });

  it('waits 5000 ms by default before giving up on the eviction', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const { router, local } = setup();
    local.evictResult = () => new Promise<void>(() => {});
    router.acquired(entityShardStream(0), 1n);
    let released = false;
    const release = router.released(entityShardStream(0), 'rebalanced').then(() => (released = true));
    await vi.advanceTimersByTimeAsync(4999);
    expect(released).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    await release;
    expect(released).toBe(true);
  });

  it('ignores streams that are not entity shards', async () => {
    const { router, local, own } = setup();
    const others = [
      'accounts#0',
      'entity-shard',
      'entity-shard/',
      `entity-shard/${NUM_SHARDS}`,
      'entity-shard/-1',
      'entity-shard/1.5',
      'entity-shard/x',
      'entity-shard/ 1',
      'entity-shard/01',
      'entity-shard/0x1',
      'entity-shard/1e0',
      'other/entity-shard/1',
    ];
    for (const stream of others) router.acquired(stream, 1n);
    expect(router.ownedShards()).toBe(0);
    for (let shard = 0; shard < NUM_SHARDS; shard++) expect(router.retains(idInShard(shard))).toBe(false);

    await own(1);
    for (const stream of others) await router.released(stream, 'rebalanced');
    expect(local.evictions).toEqual([]);
    expect(router.ownedShards()).toBe(1);
    expect(router.retains(idInShard(1))).toBe(true);
  });
});

// The differential suite of the server-streaming fast path (createServerStreamGrpc: Subscribe and
// SubscribeAll as ready frames, a page per write): the same calls, by a stock @grpc/grpc-js
// client, to two servers with the same service and interceptors, one with the fast path and one
// without it (Connect's node adapter). The message bytes, the status, its message and details,
// the response headers and trailers the client sees, and what the subscription source sees (its
// request, its signal), must be identical.
import { create, toBinary } from '@bufbuild/protobuf';
import { Code, ConnectError, type Interceptor } from '@connectrpc/connect';
import * as grpc from '@grpc/grpc-js';
import { InvalidArgumentError, ShuttingDownError } from '@chiefofstate/core';
import { ChiefOfStateService, EventWrapperSchema, SubscribeAllRequestSchema, SubscribeRequestSchema } from '@chiefofstate/protocol';
import { createGrpcJsClient, decodeRpcStatus, pollUntil, type GrpcJsClient } from '@chiefofstate/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createChiefOfStateService } from './chief-of-state-service.js';
import { startGrpcServer, type GrpcServer } from './grpc-server.js';
import type { SubscribedEventLike, SubscriptionLike, SubscriptionPort } from './subscription-methods.js';
import { edgeInterceptor } from './test-support/edge-interceptor.js';

type Path = 'fast' | 'connect';
const PATHS: readonly Path[] = ['fast', 'connect'];
const MAX_MESSAGE_BYTES = 64 * 1024;

function eventAt(position: bigint, entityId: string, revision: number, stateBytes = 8): SubscribedEventLike {
  return {
    position,
    payload: toBinary(
      EventWrapperSchema,
      create(EventWrapperSchema, {
        event: { typeUrl: 'type.googleapis.com/x.E', value: new Uint8Array([revision & 255]) },
        resultingState: { typeUrl: 'type.googleapis.com/x.S', value: new Uint8Array(stateBytes).fill(7) },
        meta: { entityId, revisionNumber: revision, headers: [{ key: 'x-tenant', value: { case: 'stringValue', value: 'acme' } }] },
        traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      }),
    ),
  };
}

/** What a subscription source does for the entity id of a call (Subscribe) or its subscription id (SubscribeAll). */
type Script = (signal: AbortSignal) => Promise<SubscriptionLike>;

const pages = (id: string, ...batches: SubscribedEventLike[][]): Script => async () => ({
  id,
  batches: (async function* () {
    yield* batches;
  })(),
});

/** Never ends by itself: its signal ends it (the deadline, the caller going away). */
const endless = (id: string, aborts: unknown[]): Script => async (signal) => ({
  id,
  batches: (async function* () {
    yield [eventAt(1n, 'e', 1)];
    await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
    aborts.push(signal.reason instanceof ConnectError ? Code[signal.reason.code] : 'no ConnectError');
  })(),
});

interface Observed {
  code: grpc.status;
  details: string;
  rpcStatus?: { code: number; message: string; details: [string, string][] };
  headers: [string, string][];
  trailers: [string, string][];
  messages: string[];
}

function entries(metadata: grpc.Metadata | undefined): [string, string][] {
  const out: [string, string][] = [];
  for (const [key, values] of Object.entries(metadata?.toJSON() ?? {})) {
    // grpc-status-details-bin is compared decoded; the date is the second it was sent in
    if (key === 'grpc-status-details-bin') continue;
    for (const value of values) out.push([key, key === 'date' ? '<date>' : Buffer.isBuffer(value) ? `bytes:${value.toString('hex')}` : String(value)]);
  }
  return out.sort(([a, x], [b, y]) => (a === b ? x.localeCompare(y) : a.localeCompare(b)));
}

describe("the server-streaming fast path against Connect's adapter, seen by a stock @grpc/grpc-js client", () => {
  const scripts = new Map<string, Script>();
  const seen: Record<Path, unknown[]> = { fast: [], connect: [] };
  const servers = {} as Record<Path, GrpcServer>;
  const clients = {} as Record<Path, GrpcJsClient>;

  const portFor = (path: Path): SubscriptionPort => ({
    subscribe: async ({ signal, ...request }) => {
      seen[path].push(request);
      if (request.entityId === '') throw new InvalidArgumentError('entity id must not be empty');
      return scripts.get(request.entityId)!(signal);
    },
    subscribeAll: async ({ signal, ...request }) => {
      seen[path].push(request);
      return scripts.get(request.subscriptionId ?? '')!(signal);
    },
    unsubscribe: async () => {},
  });

  const interceptor = edgeInterceptor;

  // replaces the stream of messages (drops every other one) when the caller asks for it: the fast
  // path then encodes the interceptor's messages one by one instead of its own frames
  const replacing: Interceptor = (next) => async (request) => {
    const response = await next(request);
    if (!response.stream || request.header.get('x-every-other') === null) return response;
    const messages = response.message;
    return {
      ...response,
      message: (async function* () {
        let i = 0;
        for await (const message of messages) if (i++ % 2 === 0) yield message;
      })(),
    };
  };

  beforeAll(async () => {
    for (const path of PATHS) {
      servers[path] = await startGrpcServer({
        host: '127.0.0.1',
        port: 0,
        maxMessageBytes: MAX_MESSAGE_BYTES,
        unaryFastPath: path === 'fast',
        interceptors: [interceptor, replacing],
        routes: (router) => {
          router.service(
            ChiefOfStateService,
            createChiefOfStateService({
              processor: { processCommand: () => Promise.reject(new Error('unused')), getState: () => Promise.reject(new Error('unused')) },
              headers: { propagated: [], persisted: [] },
              commandTimeoutMs: 5000,
              subscriptions: portFor(path),
            }),
          );
        },
      });
      clients[path] = createGrpcJsClient({ service: ChiefOfStateService, address: `127.0.0.1:${servers[path].port}` });
    }
  });

  afterAll(async () => {
    for (const path of PATHS) {
      clients[path].close();
      await servers[path].close(100);
    }
  });

  /** SubscribeAll (or Subscribe, with an entity id) on both paths, each message kept as its bytes. */
  async function both(
    request: { subscriptionId?: string; entityId?: string },
    options: { metadata?: grpc.Metadata; deadlineMs?: number } = {},
  ): Promise<Record<Path, Observed>> {
    const out = {} as Record<Path, Observed>;
    for (const path of PATHS) {
      const raw = clients[path].raw;
      const method = request.entityId === undefined ? 'SubscribeAll' : 'Subscribe';
      const bytes =
        request.entityId === undefined
          ? toBinary(SubscribeAllRequestSchema, create(SubscribeAllRequestSchema, { subscriptionId: request.subscriptionId ?? '' }))
          : toBinary(SubscribeRequestSchema, create(SubscribeRequestSchema, { entityId: request.entityId }));
      const call = raw.makeServerStreamRequest(
        `/${ChiefOfStateService.typeName}/${method}`,
        (message: Buffer) => message,
        (message: Buffer) => message,
        Buffer.from(bytes),
        options.metadata ?? new grpc.Metadata(),
        options.deadlineMs === undefined ? {} : { deadline: Date.now() + options.deadlineMs },
      );
      const observed: Observed = { code: -1 as grpc.status, details: '', headers: [], trailers: [], messages: [] };
      call.on('metadata', (metadata: grpc.Metadata) => (observed.headers = entries(metadata)));
      call.on('data', (message: Buffer) => observed.messages.push(message.toString('hex')));
      call.on('error', () => {});
      await new Promise<void>((resolve) =>
        call.on('status', (status: grpc.StatusObject) => {
          observed.code = status.code;
          observed.details = status.details;
          observed.trailers = entries(status.metadata);
          const details = status.metadata.get('grpc-status-details-bin')[0];
          if (Buffer.isBuffer(details)) {
            const decoded = decodeRpcStatus(details);
            observed.rpcStatus = { code: decoded.code, message: decoded.message, details: decoded.details.map((d) => [d.typeUrl, Buffer.from(d.value).toString('hex')]) };
          }
          resolve();
        }),
      );
      out[path] = observed;
    }
    return out;
  }

  it('pages of events: the same message bytes, headers and trailers (the interceptor\'s included), OK', async () => {
    scripts.set('pages', pages('sub-é', [eventAt(3n, 'a', 1), eventAt(4n, 'b', 1)], [eventAt(9n, 'a', 2, 40_000)], [eventAt(2n ** 40n, 'c', 7)]));
    const observed = await both({ subscriptionId: 'pages' });
    expect(observed.fast.code).toBe(grpc.status.OK);
    expect(observed.fast.messages).toHaveLength(4);
    expect(observed.fast.headers).toContainEqual(['x-served-by', 'edge']);
    expect(observed.fast.trailers).toContainEqual(['x-trailer', 'done']);
    expect(observed.fast).toEqual(observed.connect);
    expect(seen.fast).toEqual(seen.connect);
  });

  it('an interceptor that replaces the stream of messages: its messages, the same bytes on both paths', async () => {
    scripts.set('replaced', pages('sub-r', [eventAt(1n, 'a', 1), eventAt(2n, 'a', 2)], [eventAt(3n, 'a', 3)], [eventAt(4n, 'b', 1)]));
    const metadata = new grpc.Metadata();
    metadata.set('x-every-other', 'yes');
    const observed = await both({ subscriptionId: 'replaced' }, { metadata });
    expect(observed.fast.code).toBe(grpc.status.OK);
    expect(observed.fast.messages).toHaveLength(2);
    expect(observed.fast).toEqual(observed.connect);
    // the kept ones are the 1st and 3rd of the source's, as encoded by the source's own form
    const own = await both({ subscriptionId: 'replaced' });
    expect(observed.fast.messages).toEqual([own.fast.messages[0], own.fast.messages[2]]);
  });

  it('an empty subscription id and a Subscribe by entity: the same bytes', async () => {
    scripts.set('', pages('', [eventAt(5n, 'x', 1)]));
    scripts.set('entity-1', pages('generated-id', [eventAt(6n, 'entity-1', 4)]));
    expect((await both({ subscriptionId: '' })).fast).toEqual((await both({ subscriptionId: '' })).connect);
    const observed = await both({ entityId: 'entity-1' });
    expect(observed.fast.messages).toHaveLength(1);
    expect(observed.fast).toEqual(observed.connect);
  });

  it('a COS error after some events, and one refusing the subscription before any: the same status, message and details', async () => {
    scripts.set('stops', async () => ({
      id: 's',
      batches: (async function* () {
        yield [eventAt(1n, 'a', 1)];
        throw new ShuttingDownError('chief-of-state is stopping; resume with after_offset=1');
      })(),
    }));
    const stopping = await both({ subscriptionId: 'stops' });
    expect(stopping.fast.code).toBe(grpc.status.UNAVAILABLE);
    expect(stopping.fast.messages).toHaveLength(1);
    expect(stopping.fast).toEqual(stopping.connect);

    const refused = await both({ entityId: '' });
    expect(refused.fast.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(refused.fast.messages).toEqual([]);
    expect(refused.fast.code).toBe(refused.connect.code);
    expect(refused.fast.details).toBe(refused.connect.details);
    expect(refused.fast.rpcStatus).toEqual(refused.connect.rpcStatus);
    expect(refused.fast.trailers).toEqual(refused.connect.trailers);
  });

  it('an interceptor refusing the call: the same status, nothing subscribed', async () => {
    scripts.set('never', () => Promise.reject(new Error('must not be subscribed')));
    const metadata = new grpc.Metadata();
    metadata.set('x-refuse', 'yes');
    const before = { fast: seen.fast.length, connect: seen.connect.length };
    const observed = await both({ subscriptionId: 'never' }, { metadata });
    expect(observed.fast.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(observed.fast.details).toBe(observed.connect.details);
    expect(observed.fast.rpcStatus).toEqual(observed.connect.rpcStatus);
    expect(seen.fast.length - before.fast).toBe(0);
    expect(seen.connect.length - before.connect).toBe(0);
  });

  it('a message over the limit: RESOURCE_EXHAUSTED after the events before it', async () => {
    scripts.set('big', pages('s', [eventAt(1n, 'a', 1)], [eventAt(2n, 'a', 2, MAX_MESSAGE_BYTES)]));
    const observed = await both({ subscriptionId: 'big' });
    expect(observed.fast.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(observed.fast.messages).toHaveLength(1);
    expect(observed.fast.messages).toEqual(observed.connect.messages);
    expect(observed.fast.details).toBe(observed.connect.details);
  });

  it('the deadline ends the stream: DEADLINE_EXCEEDED, the source\'s signal aborted with it', async () => {
    const aborts: unknown[] = [];
    scripts.set('endless', endless('s', aborts));
    const observed = await both({ subscriptionId: 'endless' }, { deadlineMs: 300 });
    expect(observed.fast.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(observed.fast.messages).toEqual(observed.connect.messages);
    expect(observed.connect.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    await pollUntil(() => aborts.length === 2, 5000, 'both sources ended');
    // the server's deadline timer and the client's cancellation at its own deadline race: on a
    // busy machine the cancellation arrives first, and the source ends for that reason
    for (const reason of aborts) expect(['DeadlineExceeded', 'Canceled']).toContain(reason);
  });

  it('the caller cancelling ends the subscription on both paths', async () => {
    const aborts: unknown[] = [];
    scripts.set('cancelled', endless('s', aborts));
    for (const path of PATHS) {
      const call = clients[path].serverStream(ChiefOfStateService.method.subscribeAll, create(SubscribeAllRequestSchema, { subscriptionId: 'cancelled' }));
      call.on('error', () => {});
      await new Promise((resolve) => call.once('data', resolve));
      call.cancel();
      await pollUntil(() => aborts.length === PATHS.indexOf(path) + 1, 5000, `the ${path} source ended`);
    }
    expect(aborts).toEqual(['Canceled', 'Canceled']);
  });

  it('the fast path sends the response headers once the subscription is open, before any event', async () => {
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    scripts.set('quiet', async () => ({
      id: 'q',
      batches: (async function* () {
        await released;
        yield [eventAt(1n, 'a', 1)];
      })(),
    }));
    const call = clients.fast.serverStream(ChiefOfStateService.method.subscribeAll, create(SubscribeAllRequestSchema, { subscriptionId: 'quiet' }));
    call.on('error', () => {});
    const headers = await new Promise<grpc.Metadata>((resolve) => call.once('metadata', resolve));
    expect(headers.get('x-served-by')).toEqual(['edge']);
    const first = new Promise((resolve) => call.once('data', resolve));
    release();
    await first;
    call.cancel();
  });

  it('a caller that stops reading holds a bounded number of pages; resumed, it gets every event in order', async () => {
    const total = 3000;
    let pulled = 0;
    // 3000 pages of one 16 KiB event: 48 MiB if nothing held the source back
    scripts.set('slow', async () => ({
      id: 's',
      batches: (async function* () {
        for (let i = 1; i <= total; i++) {
          pulled++;
          yield [eventAt(BigInt(i), 'a', i, 16 * 1024)];
        }
      })(),
    }));
    for (const path of PATHS) {
      pulled = 0;
      const call = clients[path].serverStream(ChiefOfStateService.method.subscribeAll, create(SubscribeAllRequestSchema, { subscriptionId: 'slow' }));
      const offsets: bigint[] = [];
      call.on('data', (message: { offset: bigint }) => offsets.push(message.offset));
      call.on('error', () => {});
      call.pause();
      // the source stops being pulled once the stream's windows and buffers are full
      let last = -1;
      await pollUntil(
        async () => {
          const now = pulled;
          await new Promise((resolve) => setImmediate(resolve));
          if (now === last && now > 0) return true;
          last = now;
          return false;
        },
        10_000,
        'the source held back',
        100,
      );
      expect(pulled, path).toBeLessThan(total / 4);
      const ended = new Promise((resolve) => call.on('status', resolve));
      call.resume();
      await ended;
      expect(offsets, path).toEqual(Array.from({ length: total }, (_, i) => BigInt(i + 1)));
    }
  });

  it('a caller that goes away while its stream is full: the subscription ends on both paths', async () => {
    const ended: Path[] = [];
    let pulled = 0;
    for (const path of PATHS) {
      pulled = 0;
      scripts.set(`full-${path}`, async () => ({
        id: 's',
        batches: (async function* () {
          try {
            for (let i = 1; i <= 100_000; i++) {
              pulled++;
              yield [eventAt(BigInt(i), 'a', i, 16 * 1024)];
            }
          } finally {
            ended.push(path);
          }
        })(),
      }));
      const call = clients[path].serverStream(ChiefOfStateService.method.subscribeAll, create(SubscribeAllRequestSchema, { subscriptionId: `full-${path}` }));
      call.on('error', () => {});
      call.pause();
      await pollUntil(() => pulled > 10, 10_000, 'the stream filled');
      call.cancel();
      await pollUntil(() => ended.includes(path), 10_000, `the ${path} subscription ended`);
    }
    expect(pulled).toBeLessThan(100_000);
  });
});

// Subscribe / SubscribeAll in the Connect protocol's streaming JSON: the COS server against a stock
// Connect server (connect-node's adapter on node:http2, the same service, interceptor and types),
// called by the stock Connect client; then what only COS does: Anys of unknown types as base64.
import { createServer, type Http2Server, type ServerHttp2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { base64Encode } from '@bufbuild/protobuf/wire';
import { AnySchema, StringValueSchema, anyPack } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError, createClient, type Client } from '@connectrpc/connect';
import { connectNodeAdapter, createConnectTransport } from '@connectrpc/connect-node';
import { InvalidArgumentError, ShuttingDownError } from '@chiefofstate/core';
import { ChiefOfStateService, EventWrapperSchema, createTypeRegistry } from '@chiefofstate/protocol';
import { pollUntil } from '@chiefofstate/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createChiefOfStateService } from './chief-of-state-service.js';
import { startGrpcServer, type GrpcServer } from './grpc-server.js';
import type { SubscribedEventLike, SubscriptionLike, SubscriptionPort } from './subscription-methods.js';
import { edgeInterceptor } from './test-support/edge-interceptor.js';

const registry = createTypeRegistry();

function eventAt(position: bigint, revision: number, event = anyPack(StringValueSchema, create(StringValueSchema, { value: `e${revision}` }))): SubscribedEventLike {
  return {
    position,
    payload: toBinary(
      EventWrapperSchema,
      create(EventWrapperSchema, {
        event,
        resultingState: anyPack(StringValueSchema, create(StringValueSchema, { value: `state ${revision}` })),
        meta: { entityId: 'a', revisionNumber: revision, headers: [{ key: 'x-tenant', value: { case: 'stringValue', value: 'acme' } }] },
      }),
    ),
  };
}

type Script = (signal: AbortSignal) => Promise<SubscriptionLike>;
const scripts = new Map<string, Script>();
const aborts: string[] = [];

const port: SubscriptionPort = {
  subscribe: async ({ entityId, signal }) => {
    if (entityId === '') throw new InvalidArgumentError('entity id must not be empty');
    return scripts.get(entityId)!(signal);
  },
  subscribeAll: async ({ subscriptionId, signal }) => scripts.get(subscriptionId ?? '')!(signal),
  unsubscribe: async () => {},
};

const interceptor = edgeInterceptor;

const service = () =>
  createChiefOfStateService({
    processor: { processCommand: () => Promise.reject(new Error('unused')), getState: () => Promise.reject(new Error('unused')) },
    headers: { propagated: [], persisted: [] },
    commandTimeoutMs: 5000,
    subscriptions: port,
  });

describe("Connect streaming JSON: COS against a stock Connect server, by the stock Connect client", () => {
  let cos: GrpcServer;
  let stock: Http2Server;
  const sessions: ServerHttp2Session[] = [];
  const clients = {} as Record<'cos' | 'stock', Client<typeof ChiefOfStateService>>;
  let cosUrl: string;

  beforeAll(async () => {
    cos = await startGrpcServer({
      host: '127.0.0.1',
      port: 0,
      maxMessageBytes: 64 * 1024,
      interceptors: [interceptor],
      registry,
      routes: (router) => router.service(ChiefOfStateService, service()),
    });
    stock = createServer(
      connectNodeAdapter({ routes: (router) => router.service(ChiefOfStateService, service()), interceptors: [interceptor], jsonOptions: { registry } }),
    );
    stock.on('session', (session) => sessions.push(session));
    await new Promise<void>((resolve) => stock.listen(0, '127.0.0.1', resolve));
    cosUrl = `http://127.0.0.1:${cos.port}`;
    for (const [name, baseUrl] of [
      ['cos', cosUrl],
      ['stock', `http://127.0.0.1:${(stock.address() as AddressInfo).port}`],
    ] as const) {
      clients[name] = createClient(ChiefOfStateService, createConnectTransport({ baseUrl, httpVersion: '2', useBinaryFormat: false, jsonOptions: { registry } }));
    }
  });

  afterAll(async () => {
    await cos.close(100);
    // the clients keep their connections: close waits for them
    for (const session of sessions) session.destroy();
    await new Promise((resolve) => stock.close(resolve));
  });

  /** Every message of a SubscribeAll (or Subscribe), and how it ended, from both servers. */
  async function both(request: { subscriptionId?: string; entityId?: string }, options: { headers?: Record<string, string>; timeoutMs?: number } = {}) {
    const out: Record<string, unknown> = {};
    for (const name of ['cos', 'stock'] as const) {
      const messages: unknown[] = [];
      const headers: [string, string][] = [];
      const trailers: [string, string][] = [];
      let error: unknown;
      try {
        const stream =
          request.entityId === undefined
            ? clients[name].subscribeAll(
                { subscriptionId: request.subscriptionId ?? '' },
                { headers: options.headers ?? {}, timeoutMs: options.timeoutMs, onHeader: (h) => h.forEach((v, k) => headers.push([k, v])), onTrailer: (t) => t.forEach((v, k) => trailers.push([k, v])) },
              )
            : clients[name].subscribe(
                { entityId: request.entityId },
                { headers: options.headers ?? {}, timeoutMs: options.timeoutMs, onHeader: (h) => h.forEach((v, k) => headers.push([k, v])), onTrailer: (t) => t.forEach((v, k) => trailers.push([k, v])) },
              );
        for await (const message of stream) messages.push(toBinary(message.$typeName === 'chief_of_state.v1.SubscribeAllResponse' ? SubscribeAllResponse() : SubscribeResponse(), message as never));
      } catch (e) {
        const connectError = ConnectError.from(e);
        // the stock server compresses its stream (the client accepts gzip); COS does not: that header aside
        const metadata = [...connectError.metadata].filter(([key]) => key !== 'connect-content-encoding' && key !== 'date');
        error = { code: Code[connectError.code], message: connectError.rawMessage, details: connectError.details, metadata };
      }
      out[name] = {
        messages,
        error,
        headers: headers.filter(([k]) => k === 'x-served-by' || k === 'content-type'),
        trailers: trailers.filter(([k]) => k === 'x-trailer'),
      };
    }
    return out as Record<'cos' | 'stock', { messages: Uint8Array[]; error: unknown; headers: unknown; trailers: unknown }>;
  }

  it('events of known types: the same messages, headers and trailers', async () => {
    scripts.set('known', async () => ({
      id: 'sub-1',
      batches: (async function* () {
        yield [eventAt(3n, 1), eventAt(4n, 2)];
        yield [eventAt(2n ** 40n, 3)];
      })(),
    }));
    const observed = await both({ subscriptionId: 'known' });
    expect(observed.cos.messages).toEqual(
      [eventAt(3n, 1), eventAt(4n, 2), eventAt(2n ** 40n, 3)].map(({ position, payload }) => {
        const wrapper = fromBinary(EventWrapperSchema, payload);
        return toBinary(
          SubscribeAllResponse(),
          create(SubscribeAllResponse(), { subscriptionId: 'sub-1', event: wrapper.event, resultingState: wrapper.resultingState, meta: wrapper.meta, offset: position }),
        );
      }),
    );
    expect(observed.cos.error).toBeUndefined();
    expect(observed.cos.headers).toContainEqual(['x-served-by', 'edge']);
    expect(observed.cos.trailers).toEqual([['x-trailer', 'done']]);
    expect(observed.cos).toEqual(observed.stock);
  });

  it('a COS error after events, one refusing the subscription, and an interceptor refusing the call: the same errors', async () => {
    scripts.set('stops', async () => ({
      id: 's',
      batches: (async function* () {
        yield [eventAt(1n, 1)];
        throw new ShuttingDownError('chief-of-state is stopping; resume with after_offset=1');
      })(),
    }));
    const stopping = await both({ subscriptionId: 'stops' });
    expect(stopping.cos.messages).toHaveLength(1);
    expect(stopping.cos.error).toMatchObject({ code: 'Unavailable' });
    expect(stopping.cos).toEqual(stopping.stock);

    const refused = await both({ entityId: '' });
    expect(refused.cos.error).toMatchObject({ code: 'InvalidArgument' });
    expect(refused.cos.error).toEqual(refused.stock.error);

    scripts.set('never', () => Promise.reject(new Error('must not be subscribed')));
    const denied = await both({ subscriptionId: 'never' }, { headers: { 'x-refuse': 'yes' } });
    expect(denied.cos.error).toMatchObject({ code: 'PermissionDenied', message: 'not you' });
    expect(denied.cos.error).toEqual(denied.stock.error);
  });

  it('the deadline (connect-timeout-ms) ends both streams with DEADLINE_EXCEEDED, the source aborted', async () => {
    scripts.set('endless', async (signal) => ({
      id: 's',
      batches: (async function* () {
        yield [eventAt(1n, 1)];
        await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
        aborts.push(signal.reason instanceof ConnectError ? Code[signal.reason.code] : 'no ConnectError');
      })(),
    }));
    aborts.length = 0;
    const observed = await both({ subscriptionId: 'endless' }, { timeoutMs: 300 });
    expect(observed.cos.messages).toHaveLength(1);
    expect(observed.cos.error).toMatchObject({ code: 'DeadlineExceeded' });
    expect((observed.stock.error as { code: string }).code).toBe('DeadlineExceeded');
    await pollUntil(() => aborts.length === 2, 5000, 'both sources ended');
  });

  it('only COS: an event of a type it does not know comes as the base64 of the Any, where Connect ends the stream', async () => {
    const unknown = create(AnySchema, { typeUrl: 'type.googleapis.com/shop.v1.Secret', value: new Uint8Array([8, 42]) });
    scripts.set('unknown', async () => ({
      id: 's',
      batches: (async function* () {
        yield [eventAt(7n, 1, unknown)];
      })(),
    }));
    // the stock server cannot write it
    const stockError = await (async () => {
      for await (const _ of clients.stock.subscribeAll({ subscriptionId: 'unknown' })) void _;
    })().then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(stockError?.code).toBe(Code.Internal);

    // COS, read as a browser would: fetch and the envelopes by hand
    const request = Buffer.from(JSON.stringify({ subscriptionId: 'unknown' }));
    const body = Buffer.concat([Buffer.from([0, 0, 0, 0, 0]), request]);
    body.writeUInt32BE(request.byteLength, 1);
    const response = await fetch(`${cosUrl}/${ChiefOfStateService.typeName}/SubscribeAll`, {
      method: 'POST',
      headers: { 'content-type': 'application/connect+json' },
      body,
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/connect+json');
    const bytes = Buffer.from(await response.arrayBuffer());
    const envelopes: { flags: number; json: Record<string, unknown> }[] = [];
    for (let at = 0; at < bytes.byteLength; ) {
      const length = bytes.readUInt32BE(at + 1);
      envelopes.push({ flags: bytes[at]!, json: JSON.parse(bytes.subarray(at + 5, at + 5 + length).toString('utf8')) as Record<string, unknown> });
      at += 5 + length;
    }
    expect(envelopes).toHaveLength(2);
    expect(envelopes[0]!.json).toMatchObject({
      subscriptionId: 's',
      event: base64Encode(toBinary(AnySchema, unknown)),
      resultingState: { '@type': 'type.googleapis.com/google.protobuf.StringValue', value: 'state 1' },
      offset: '7',
    });
    // the end of the stream: no error, the interceptor's trailer
    expect(envelopes[1]).toEqual({ flags: 2, json: { metadata: { 'x-trailer': ['done'] } } });
  });
});

function SubscribeAllResponse() {
  return registry.getMessage('chief_of_state.v1.SubscribeAllResponse')!;
}
function SubscribeResponse() {
  return registry.getMessage('chief_of_state.v1.SubscribeResponse')!;
}

import { create, toBinary } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidArgumentError, ShuttingDownError } from '@chiefofstate/core';
import {
  ChiefOfStateService,
  EventWrapperSchema,
  SubscribeAllRequestSchema,
  SubscribeAllResponseSchema,
  SubscribeRequestSchema,
  UnsubscribeRequestSchema,
  type SubscribeAllResponse,
  type SubscribeResponse,
} from '@chiefofstate/protocol';
import { createGrpcJsClient, type GrpcJsClient } from '@chiefofstate/testing';
import { createChiefOfStateService } from './chief-of-state-service.js';
import { startGrpcServer, type GrpcServer } from './grpc-server.js';
import type { SubscribedEventLike, SubscriptionPort } from './subscription-methods.js';

const processor = {
  processCommand: () => Promise.reject(new Error('unused')),
  getState: () => Promise.reject(new Error('unused')),
};

function eventAt(position: bigint, entityId: string, revision: number): SubscribedEventLike {
  return {
    position,
    payload: toBinary(
      EventWrapperSchema,
      create(EventWrapperSchema, {
        meta: { entityId, revisionNumber: revision },
        event: { typeUrl: 'type.googleapis.com/x.E' },
        // the command's trace context stays in the journal: offset is field 10 of the response
        traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      }),
    ),
  };
}

/** A port standing in for the subscription hub: the edge is what is under test. */
function scriptedPort() {
  const seen: unknown[] = [];
  const unsubscribed: string[] = [];
  const port: SubscriptionPort = {
    async subscribe(options) {
      seen.push(options);
      if (options.entityId === '') throw new InvalidArgumentError('entity id must not be empty');
      return {
        id: 's-1',
        batches: (async function* () {
          yield [eventAt(11n, options.entityId, 1)];
          yield [eventAt(15n, options.entityId, 2)];
          throw new ShuttingDownError('chief-of-state is stopping; resume with from_revision=3');
        })(),
      };
    },
    async subscribeAll(options) {
      seen.push(options);
      return {
        id: 's-1',
        batches: (async function* () {
          yield [eventAt(21n, 'a', 7)];
        })(),
      };
    },
    unsubscribe: async (id) => {
      unsubscribed.push(id);
    },
  };
  return { port, seen, unsubscribed };
}

function readAll<T>(call: grpc.ClientReadableStream<T>): Promise<{ messages: T[]; status: grpc.StatusObject }> {
  const messages: T[] = [];
  call.on('data', (message: T) => messages.push(message));
  call.on('error', () => {});
  return new Promise((resolve) => call.on('status', (status) => resolve({ messages, status })));
}

describe.each([
  ['the gRPC fast path', true],
  ["Connect's adapter", false],
])('subscription RPCs at the edge, through %s', (_, unaryFastPath) => {
  const scripted = scriptedPort();
  let on: GrpcServer;
  let off: GrpcServer;
  let client: GrpcJsClient;
  let offClient: GrpcJsClient;

  beforeAll(async () => {
    const start = (subscriptions?: SubscriptionPort) =>
      startGrpcServer({
        host: '127.0.0.1',
        port: 0,
        maxMessageBytes: 64 * 1024,
        unaryFastPath,
        routes: (router) => {
          router.service(
            ChiefOfStateService,
            createChiefOfStateService({
              processor,
              headers: { propagated: [], persisted: [] },
              commandTimeoutMs: 5000,
              ...(subscriptions ? { subscriptions } : {}),
            }),
          );
        },
      });
    on = await start(scripted.port);
    off = await start();
    client = createGrpcJsClient({ service: ChiefOfStateService, address: `127.0.0.1:${on.port}` });
    offClient = createGrpcJsClient({ service: ChiefOfStateService, address: `127.0.0.1:${off.port}` });
  });

  afterAll(async () => {
    client.close();
    offClient.close();
    await on.close(100);
    await off.close(100);
  });

  it('streams each event with its offset, then ends with the COS error as a status naming where to resume', async () => {
    const { messages, status } = await readAll<SubscribeResponse>(
      client.serverStream(ChiefOfStateService.method.subscribe, create(SubscribeRequestSchema, { entityId: 'e-1', subscriptionId: 'mine', fromRevision: 1n })),
    );
    expect(scripted.seen.at(-1)).toMatchObject({ entityId: 'e-1', subscriptionId: 'mine', fromRevision: 1n });
    expect(messages.map((m) => [m.subscriptionId, m.offset, m.meta?.revisionNumber, m.event?.typeUrl])).toEqual([
      ['s-1', 11n, 1, 'type.googleapis.com/x.E'],
      ['s-1', 15n, 2, 'type.googleapis.com/x.E'],
    ]);
    expect(status.code).toBe(grpc.status.UNAVAILABLE);
    expect(status.details).toContain('from_revision=3');
  });

  it('sends the stored event, state and metadata as the response fields, the same bytes to every subscriber', async () => {
    const wrapper = create(EventWrapperSchema, {
      event: { typeUrl: 'type.googleapis.com/bank.Deposited', value: new Uint8Array([1, 2, 3]) },
      resultingState: { typeUrl: 'type.googleapis.com/bank.Account', value: new Uint8Array(70_000).fill(9) },
      meta: { entityId: 'compte-é', revisionNumber: 300, revisionDate: { seconds: 1_700_000_000n }, headers: [{ key: 'x-tenant', value: { case: 'stringValue', value: 'acme' } }] },
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      tracestate: 'k=v',
    });
    // one payload object for two subscribers, as the shared tail hands it out
    const payload = toBinary(EventWrapperSchema, wrapper);
    const shared: SubscriptionPort = {
      ...scripted.port,
      subscribeAll: async (options) => ({
        id: options.subscriptionId ?? '',
        batches: (async function* () {
          yield [{ position: 2n ** 40n, payload }];
        })(),
      }),
    };
    const server = await startGrpcServer({
      host: '127.0.0.1',
      port: 0,
      maxMessageBytes: 128 * 1024,
      unaryFastPath,
      routes: (router) => {
        router.service(ChiefOfStateService, createChiefOfStateService({ processor, headers: { propagated: [], persisted: [] }, commandTimeoutMs: 5000, subscriptions: shared }));
      },
    });
    const sharedClient = createGrpcJsClient({ service: ChiefOfStateService, address: `127.0.0.1:${server.port}` });
    try {
      for (const subscriptionId of ['first', 'second-subscriber']) {
        const { messages, status } = await readAll<SubscribeAllResponse>(
          sharedClient.serverStream(ChiefOfStateService.method.subscribeAll, create(SubscribeAllRequestSchema, { subscriptionId })),
        );
        expect(status.code).toBe(grpc.status.OK);
        // decodes to exactly what encoding the whole response gives
        expect(messages.map((message) => toBinary(SubscribeAllResponseSchema, message))).toEqual([
          toBinary(
            SubscribeAllResponseSchema,
            create(SubscribeAllResponseSchema, { subscriptionId, event: wrapper.event, resultingState: wrapper.resultingState, meta: wrapper.meta, offset: 2n ** 40n }),
          ),
        ]);
      }
    } finally {
      sharedClient.close();
      await server.close(100);
    }
  });

  it('passes a live-only request without a start, and ends SubscribeAll with OK when the subscription ends', async () => {
    const { messages, status } = await readAll<SubscribeAllResponse>(
      client.serverStream(ChiefOfStateService.method.subscribeAll, create(SubscribeAllRequestSchema, {})),
    );
    expect(scripted.seen.at(-1)).not.toHaveProperty('afterPosition');
    expect(messages.map((m) => m.offset)).toEqual([21n]);
    expect(status.code).toBe(grpc.status.OK);
    await readAll(client.serverStream(ChiefOfStateService.method.subscribeAll, create(SubscribeAllRequestSchema, { afterOffset: 0n })));
    expect(scripted.seen.at(-1)).toMatchObject({ afterPosition: 0n });
  });

  it('refuses an invalid request with its status before any event', async () => {
    const { messages, status } = await readAll(client.serverStream(ChiefOfStateService.method.subscribe, create(SubscribeRequestSchema, { entityId: '' })));
    expect(messages).toEqual([]);
    expect(status.code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it('answers Unsubscribe with the id, on the unary path', async () => {
    const { response } = await client.unary(ChiefOfStateService.method.unsubscribe, create(UnsubscribeRequestSchema, { subscriptionId: 'x' }));
    expect(response.subscriptionId).toBe('x');
    expect(scripted.unsubscribed).toEqual(['x']);
  });

  it('keeps a quiet subscription open past the idle timeout of its connection (PING, not GOAWAY)', async () => {
    let release: (() => void) | undefined;
    const quiet: SubscriptionPort = {
      ...scripted.port,
      subscribeAll: async () => ({
        id: 'q',
        batches: (async function* () {
          await new Promise<void>((resolve) => (release = resolve));
          yield [eventAt(5n, 'late', 1)];
        })(),
      }),
    };
    const server = await startGrpcServer({
      host: '127.0.0.1',
      port: 0,
      maxMessageBytes: 64 * 1024,
      idleTimeoutMs: 100,
      unaryFastPath,
      routes: (router) => {
        router.service(ChiefOfStateService, createChiefOfStateService({ processor, headers: { propagated: [], persisted: [] }, commandTimeoutMs: 5000, subscriptions: quiet }));
      },
    });
    const quietClient = createGrpcJsClient({ service: ChiefOfStateService, address: `127.0.0.1:${server.port}` });
    try {
      const reading = readAll<SubscribeAllResponse>(quietClient.serverStream(ChiefOfStateService.method.subscribeAll, create(SubscribeAllRequestSchema, {})));
      // five idle timeouts and their grace periods without a frame of the stream
      await new Promise((resolve) => setTimeout(resolve, 1000));
      release?.();
      const { messages, status } = await reading;
      expect(messages.map((m) => m.offset)).toEqual([5n]);
      expect(status.code).toBe(grpc.status.OK);
    } finally {
      quietClient.close();
      await server.close(100);
    }
  });

  it('answers UNIMPLEMENTED when subscriptions are off', async () => {
    const { status } = await readAll(offClient.serverStream(ChiefOfStateService.method.subscribeAll, create(SubscribeAllRequestSchema, {})));
    expect(status.code).toBe(grpc.status.UNIMPLEMENTED);
    const error = await offClient
      .unary(ChiefOfStateService.method.unsubscribe, create(UnsubscribeRequestSchema, { subscriptionId: 'x' }))
      .catch((e: unknown) => e as grpc.ServiceError);
    expect((error as grpc.ServiceError).code).toBe(grpc.status.UNIMPLEMENTED);
  });
});

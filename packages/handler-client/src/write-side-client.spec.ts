import { setTimeout as sleep } from 'node:timers/promises';
import { create, toBinary, type MessageInitShape } from '@bufbuild/protobuf';
import { AnySchema, StringValueSchema } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError, type HandlerContext } from '@connectrpc/connect';
import {
  DeadlineExceededError,
  HandlerFailedError,
  HandlerUnavailableError,
  MessageTooLargeError,
} from '@chiefofstate/core';
import {
  HandleCommandRequestSchema,
  HandleEventRequestSchema,
  HandleReadSideRequestSchema,
  MetaDataSchema,
  ReadSideHandlerService,
  WriteSideHandlerService,
  emptyState,
  packAny,
  type HandleCommandRequest,
  type HandleCommandResponseSchema,
  type HandleEventRequest,
  type HandleEventResponseSchema,
} from '@chiefofstate/protocol';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import { encodeRpcStatus, startTestGrpcServer, type TestGrpcServer } from '@chiefofstate/testing';
import { createReadSideClient } from './read-side-client.js';
import { createWriteSideClient, type WriteSideClient } from './write-side-client.js';

type CommandImpl = (
  request: HandleCommandRequest,
  context: HandlerContext,
) => Promise<MessageInitShape<typeof HandleCommandResponseSchema>>;
type EventImpl = (
  request: HandleEventRequest,
  context: HandlerContext,
) => Promise<MessageInitShape<typeof HandleEventResponseSchema>>;

const defaultCommand: CommandImpl = (request) =>
  Promise.resolve({ events: request.command ? [request.command] : [] });
const defaultEvent: EventImpl = (request) => Promise.resolve({ resultingState: request.event });

let onCommand = defaultCommand;
let onEvent = defaultEvent;
let server: TestGrpcServer;
const clients: WriteSideClient[] = [];

function client(options: Partial<Parameters<typeof createWriteSideClient>[0]> = {}): WriteSideClient {
  const created = createWriteSideClient({ host: '127.0.0.1', port: server.port, timeoutMs: 2000, ...options });
  clients.push(created);
  return created;
}

function command(text: string): HandleCommandRequest {
  return create(HandleCommandRequestSchema, {
    command: packAny(StringValueSchema, create(StringValueSchema, { value: text })),
    priorState: emptyState(),
    priorEventMeta: create(MetaDataSchema, { entityId: 'account-1' }),
  });
}

async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected the call to fail');
}

beforeAll(async () => {
  server = await startTestGrpcServer((router) => {
    router.service(WriteSideHandlerService, {
      handleCommand: (request, context) => onCommand(request, context),
      handleEvent: (request, context) => onEvent(request, context),
    });
    router.service(ReadSideHandlerService, {
      handleReadSide: (request, context) =>
        Promise.resolve({
          successful:
            request.readSideId === 'rs-1' && context.requestHeader.get('x-cos-entity-id') === request.meta?.entityId,
        }),
    });
  });
});

afterEach(async () => {
  onCommand = defaultCommand;
  onEvent = defaultEvent;
  await Promise.all(clients.splice(0).map((c) => c.close()));
});

afterAll(async () => {
  await server.stop();
});

describe('WriteSideClient', () => {
  it('calls HandleCommand and HandleEvent over gRPC and returns the responses', async () => {
    let received: HandleCommandRequest | undefined;
    onCommand = (request) => {
      received = request;
      return Promise.resolve({ events: [request.command!, request.command!] });
    };
    const c = client();
    const response = await c.handleCommand(command('open'));
    expect(received?.priorState?.typeUrl).toBe('type.googleapis.com/google.protobuf.Empty');
    expect(received?.priorEventMeta?.entityId).toBe('account-1');
    expect(response.events).toHaveLength(2);
    expect(response.events[0]?.value).toEqual(command('open').command?.value);

    const state = packAny(StringValueSchema, create(StringValueSchema, { value: 'state' }));
    const eventResponse = await c.handleEvent(
      create(HandleEventRequestSchema, { event: state, priorState: emptyState(), eventMeta: { revisionNumber: 1 } }),
    );
    expect(eventResponse.resultingState?.typeUrl).toBe(state.typeUrl);
    expect(eventResponse.resultingState?.value).toEqual(state.value);
  });

  it('sends call headers as request metadata (propagated headers, traceparent)', async () => {
    let seen: Record<string, string | null> = {};
    onCommand = (_request, context) => {
      seen = {
        custom: context.requestHeader.get('x-custom'),
        traceparent: context.requestHeader.get('traceparent'),
        timeout: context.requestHeader.get('grpc-timeout'),
      };
      return Promise.resolve({});
    };
    const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    await client().handleCommand(command('x'), { headers: { 'x-custom': 'abc', traceparent } });
    expect(seen.custom).toBe('abc');
    expect(seen.traceparent).toBe(traceparent);
    expect(seen.timeout).toMatch(/^\d+m$/);

    await client().handleCommand(command('x'), { headers: new Headers({ 'x-custom': 'from-headers' }) });
    expect(seen.custom).toBe('from-headers');
  });

  it('passes a handler error through with code, message and rich details verbatim', async () => {
    // A detail with a non-standard type URL prefix must survive too: decode trailers ourselves.
    const details = [
      { typeUrl: 'type.googleapis.com/google.protobuf.StringValue', value: toBinary(StringValueSchema, create(StringValueSchema, { value: 'balance: 5' })) },
      { typeUrl: 'example.com/custom/bank.v1.Insufficient', value: new Uint8Array([1, 2, 3, 250]) },
    ];
    const message = 'fonds insuffisants: 5 € < 10 €';
    onCommand = () => {
      throw new ConnectError(message, Code.FailedPrecondition, {
        'grpc-status-details-bin': Buffer.from(
          encodeRpcStatus({ code: Code.FailedPrecondition, message, details }),
        ).toString('base64'),
      });
    };
    const error = await rejectionOf(client().handleCommand(command('withdraw')));
    expect(error).toBeInstanceOf(HandlerFailedError);
    const failed = error as HandlerFailedError;
    expect(failed.statusCode).toBe(Code.FailedPrecondition);
    expect(failed.statusMessage).toBe(message);
    expect(failed.details.map((d) => d.typeUrl)).toEqual(details.map((d) => d.typeUrl));
    expect(failed.details.map((d) => [...d.value])).toEqual(details.map((d) => [...d.value]));
  });

  it('carries details Connect handlers attach the standard way', async () => {
    onEvent = () => {
      throw new ConnectError('bad event', Code.InvalidArgument, undefined, [
        { desc: StringValueSchema, value: { value: 'why' } },
      ]);
    };
    const error = (await rejectionOf(
      client().handleEvent(create(HandleEventRequestSchema, { event: emptyState() })),
    )) as HandlerFailedError;
    expect(error).toBeInstanceOf(HandlerFailedError);
    expect(error.statusCode).toBe(Code.InvalidArgument);
    expect(error.statusMessage).toBe('bad event');
    expect(error.details).toEqual([
      {
        typeUrl: 'type.googleapis.com/google.protobuf.StringValue',
        value: toBinary(StringValueSchema, create(StringValueSchema, { value: 'why' })),
      },
    ]);
  });

  it('reports a status the handler itself sent as HandlerFailedError, even UNAVAILABLE', async () => {
    onCommand = () => {
      throw new ConnectError('downstream db is down', Code.Unavailable);
    };
    const error = (await rejectionOf(client().handleCommand(command('x')))) as HandlerFailedError;
    expect(error).toBeInstanceOf(HandlerFailedError);
    expect(error.statusCode).toBe(Code.Unavailable);
    expect(error.statusMessage).toBe('downstream db is down');
    expect(error.details).toEqual([]);
  });

  it('reports an unreachable handler as HandlerUnavailableError', async () => {
    const unused = await startTestGrpcServer(() => {});
    const port = unused.port;
    await unused.stop();
    const error = await rejectionOf(client({ port }).handleCommand(command('x')));
    expect(error).toBeInstanceOf(HandlerUnavailableError);
    expect((error as Error).message).toContain('ECONNREFUSED');
    // what a caller is told names neither the address nor the driver's words
    expect((error as HandlerUnavailableError).publicMessage).toBe('write handler unavailable');
  });

  it('reports a handler slower than the per-call timeout as DeadlineExceededError', async () => {
    onCommand = async () => {
      await sleep(1000);
      return {};
    };
    const started = performance.now();
    const error = await rejectionOf(client({ timeoutMs: 150 }).handleCommand(command('slow')));
    const elapsed = performance.now() - started;
    expect(error).toBeInstanceOf(DeadlineExceededError);
    expect(elapsed).toBeGreaterThanOrEqual(140);
    expect(elapsed).toBeLessThan(900);
  });

  it('uses the caller’s remaining time when it is shorter than the per-call timeout', async () => {
    let timeoutHeader: string | null = null;
    onCommand = async (_request, context) => {
      timeoutHeader = context.requestHeader.get('grpc-timeout');
      await sleep(1000);
      return {};
    };
    const started = performance.now();
    const error = await rejectionOf(client({ timeoutMs: 5000 }).handleCommand(command('slow'), { timeoutMs: 120 }));
    expect(error).toBeInstanceOf(DeadlineExceededError);
    expect(performance.now() - started).toBeLessThan(900);
    expect(timeoutHeader).toBe('120m');

    // no time left: fails at once, nothing sent
    let called = false;
    onCommand = () => {
      called = true;
      return Promise.resolve({});
    };
    await expect(client().handleCommand(command('late'), { timeoutMs: 0 })).rejects.toBeInstanceOf(
      DeadlineExceededError,
    );
    expect(called).toBe(false);
  });

  it('fails with the caller’s abort reason when the caller cancels', async () => {
    onCommand = async () => {
      await sleep(1000);
      return {};
    };
    const controller = new AbortController();
    const reason = new Error('client went away');
    setTimeout(() => controller.abort(reason), 50);
    const error = await rejectionOf(client().handleCommand(command('x'), { signal: controller.signal }));
    expect(error).toBe(reason);
  });

  it('reconnects after the handler restarts on the same port', async () => {
    const restartable = await startTestGrpcServer((router) =>
      router.service(WriteSideHandlerService, {
        handleCommand: () => Promise.resolve({}),
        handleEvent: (request) => Promise.resolve({ resultingState: request.event }),
      }),
    );
    try {
      const c = client({ port: restartable.port });
      await expect(c.handleCommand(command('before'))).resolves.toBeDefined();
      await restartable.stop();
      await expect(c.handleCommand(command('while down'))).rejects.toBeInstanceOf(HandlerUnavailableError);
      await restartable.start();
      await expect(c.handleCommand(command('after'))).resolves.toBeDefined();
      // and it keeps working on the new connection
      await expect(c.handleCommand(command('after again'))).resolves.toBeDefined();
    } finally {
      await restartable.stop();
    }
  });

  it('multiplexes concurrent calls', async () => {
    onCommand = async (request) => {
      await sleep(20);
      return { events: [request.command!] };
    };
    const c = client();
    const responses = await Promise.all(Array.from({ length: 100 }, (_, i) => c.handleCommand(command(`c${i}`))));
    expect(responses.map((r) => r.events[0]?.value)).toEqual(
      Array.from({ length: 100 }, (_, i) => command(`c${i}`).command?.value),
    );
  });

  it('rejects messages over maxMessageBytes as MessageTooLargeError', async () => {
    const big = create(HandleCommandRequestSchema, {
      command: create(AnySchema, { typeUrl: 'type.googleapis.com/x.Big', value: new Uint8Array(4096) }),
    });
    await expect(client({ maxMessageBytes: 1024 }).handleCommand(big)).rejects.toBeInstanceOf(MessageTooLargeError);
    onCommand = () =>
      Promise.resolve({ events: [create(AnySchema, { typeUrl: 'type.googleapis.com/x.Big', value: new Uint8Array(4096) })] });
    await expect(client({ maxMessageBytes: 1024 }).handleCommand(command('x'))).rejects.toBeInstanceOf(
      MessageTooLargeError,
    );
  });

  it('refuses calls after close', async () => {
    const c = client();
    await c.handleCommand(command('x'));
    await c.close();
    await expect(c.handleCommand(command('y'))).rejects.toBeInstanceOf(HandlerUnavailableError);
  });
});

describe('ReadSideClient', () => {
  it('calls HandleReadSide with headers', async () => {
    const readSide = createReadSideClient({ host: '127.0.0.1', port: server.port });
    try {
      const request = create(HandleReadSideRequestSchema, {
        readSideId: 'rs-1',
        event: emptyState(),
        meta: { entityId: 'e-1', revisionNumber: 1 },
      });
      const ok = await readSide.handleReadSide(request, { headers: { 'x-cos-entity-id': 'e-1' } });
      expect(ok.successful).toBe(true);
      const wrong = await readSide.handleReadSide(request, { headers: { 'x-cos-entity-id': 'other' } });
      expect(wrong.successful).toBe(false);
    } finally {
      await readSide.close();
    }
  });
});

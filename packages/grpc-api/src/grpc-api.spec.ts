import { create, toBinary } from '@bufbuild/protobuf';
import { AnySchema, type Any } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError, createClient, type Interceptor } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from '@connectrpc/connect-node';
import * as grpc from '@grpc/grpc-js';
import {
  DeadlineExceededError,
  FencedError,
  HandlerFailedError,
  HandlerUnavailableError,
  InternalError,
  InvalidArgumentError,
  JournalConflictError,
  MessageTooLargeError,
  NotFoundError,
  ShuttingDownError,
  StoreError,
  CommitOutcomeUnknownError,
  UnauthenticatedError,
  PermissionDeniedError,
} from '@chiefofstate/core';
import {
  ChiefOfStateService,
  FORWARDED_BY_HEADER,
  FORWARDED_PROOF_HEADER,
  GetStateRequestSchema,
  Health,
  HealthCheckRequestSchema,
  HeaderSchema,
  MetaDataSchema,
  ProcessCommandRequestSchema,
  type Header,
} from '@chiefofstate/protocol';
import { createGrpcJsClient, decodeRpcStatus, type GrpcJsClient } from '@chiefofstate/testing';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createChiefOfStateService, type CommandProcessor } from './chief-of-state-service.js';
import { createHealthStatus, ServingStatus } from './health-service.js';
import { startGrpcServer, type GrpcServer } from './grpc-server.js';

type Seen = Parameters<CommandProcessor['processCommand']>[0];

/** A processor standing in for the entity runtime: the edge is what is under test here. */
function scriptedProcessor() {
  const calls: Seen[] = [];
  let behaviour: (request: Seen) => Promise<{ state: Any; meta: ReturnType<typeof create<typeof MetaDataSchema>> }> =
    async (request) => ({
      state: request.command ?? create(AnySchema),
      meta: create(MetaDataSchema, { entityId: request.entityId, revisionNumber: 1 }),
    });
  const processor: CommandProcessor = {
    processCommand: (request) => {
      calls.push(request);
      return behaviour(request);
    },
    getState: async (entityId) => {
      if (entityId === 'missing') throw new NotFoundError(`entity ${entityId} not found`);
      return { state: create(AnySchema, { typeUrl: 'type.googleapis.com/x.S', value: new Uint8Array([5]) }), meta: create(MetaDataSchema, { entityId, revisionNumber: 3 }) };
    },
  };
  return { processor, calls, setBehaviour: (b: typeof behaviour) => (behaviour = b) };
}

const MAX = 64 * 1024;

describe('gRPC edge', () => {
  const scripted = scriptedProcessor();
  const health = createHealthStatus({ services: ['chief_of_state.v1.ChiefOfStateService'] });
  let server: GrpcServer;
  let client: GrpcJsClient;

  beforeAll(async () => {
    server = await startGrpcServer({
      host: '127.0.0.1',
      port: 0,
      maxMessageBytes: MAX,
      routes: (router) => {
        router.service(
          ChiefOfStateService,
          createChiefOfStateService({
            processor: scripted.processor,
            headers: { propagated: ['x-tenant'], persisted: ['x-user', 'x-token-bin'] },
            commandTimeoutMs: 5000,
          }),
        );
        router.service(Health, health.service);
      },
    });
    client = createGrpcJsClient({ service: ChiefOfStateService, address: `127.0.0.1:${server.port}` });
  });

  afterAll(async () => {
    client.close();
    await server.close(100);
  });

  beforeEach(() => {
    scripted.calls.length = 0;
    scripted.setBehaviour(async (request) => ({
      state: request.command ?? create(AnySchema),
      meta: create(MetaDataSchema, { entityId: request.entityId, revisionNumber: 1 }),
    }));
  });

  const command = create(AnySchema, { typeUrl: 'type.googleapis.com/bank.Open', value: new Uint8Array([1]) });
  const send = (entityId: string, metadata = new grpc.Metadata(), deadline?: number) =>
    client.unary(ChiefOfStateService.method.processCommand, create(ProcessCommandRequestSchema, { entityId, command }), {
      metadata,
      ...(deadline !== undefined ? { deadline: Date.now() + deadline } : {}),
    });
  const failure = (promise: Promise<unknown>) =>
    promise.then(
      () => {
        throw new Error('expected the call to fail');
      },
      (e: unknown) => e as grpc.ServiceError,
    );

  it('passes the command, propagated headers, trace context and persisted headers', async () => {
    const metadata = new grpc.Metadata();
    metadata.set('x-tenant', 'acme');
    metadata.set('x-other', 'not-forwarded');
    metadata.set('traceparent', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
    metadata.set('x-user', 'alice');
    metadata.set('x-token-bin', Buffer.from([0, 1, 2, 255]));
    const { response } = await send('acc-1', metadata);
    expect(response.meta?.entityId).toBe('acc-1');
    const seen = scripted.calls[0]!;
    expect(seen.entityId).toBe('acc-1');
    expect(seen.command?.typeUrl).toBe('type.googleapis.com/bank.Open');
    expect(seen.propagatedHeaders).toEqual({
      'x-tenant': 'acme',
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    });
    const persisted = seen.persistedHeaders!.map((h: Header) => toBinary(HeaderSchema, h));
    expect(persisted).toEqual([
      toBinary(HeaderSchema, create(HeaderSchema, { key: 'x-user', value: { case: 'stringValue', value: 'alice' } })),
      toBinary(
        HeaderSchema,
        create(HeaderSchema, { key: 'x-token-bin', value: { case: 'bytesValue', value: new Uint8Array([0, 1, 2, 255]) } }),
      ),
    ]);
  });

  it('hands the forwarding mark and its proof to the processor, for both methods', async () => {
    const metadata = new grpc.Metadata();
    metadata.set(FORWARDED_BY_HEADER, '10.0.0.2:9000');
    metadata.set(FORWARDED_PROOF_HEADER, 'v1.1.123.proof');
    await send('acc-1', metadata);
    expect(scripted.calls[0]).toMatchObject({ forwardedBy: '10.0.0.2:9000', forwardProof: 'v1.1.123.proof' });
    await send('acc-1');
    expect(scripted.calls[1]!.forwardedBy).toBeUndefined();
    expect(scripted.calls[1]!.forwardProof).toBeUndefined();
  });

  it('hands the idempotency key and the expected revision to the processor; refuses bad ones without calling it', async () => {
    const metadata = new grpc.Metadata();
    metadata.set('x-cos-idempotency-key', 'deposit-1');
    metadata.set('x-cos-expected-revision', '7');
    await send('acc-1', metadata);
    expect(scripted.calls[0]).toMatchObject({ idempotencyKey: 'deposit-1', expectedRevision: 7n });
    const bad = new grpc.Metadata();
    bad.set('x-cos-expected-revision', 'latest');
    const e = await failure(send('acc-1', bad));
    expect(e.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(e.details).toContain('x-cos-expected-revision');
    expect(scripted.calls).toHaveLength(1);
  });

  it("caps the command's deadline by the caller's and by the command timeout", async () => {
    const before = Date.now();
    await send('acc-1', new grpc.Metadata(), 1000);
    await send('acc-1');
    const [withCaller, withoutCaller] = scripted.calls;
    expect(withCaller!.deadline! - before).toBeLessThanOrEqual(1000 + 50);
    expect(withCaller!.deadline! - before).toBeGreaterThan(500);
    expect(withoutCaller!.deadline! - before).toBeGreaterThan(4000);
    expect(withoutCaller!.deadline! - before).toBeLessThanOrEqual(5000 + 200);
  });

  const LEAK = 'postgres://cos:hunter2@db.internal:5432/cos connect ECONNREFUSED 10.1.2.3:50051';
  it.each([
    [new InvalidArgumentError('empty entity ID'), grpc.status.INVALID_ARGUMENT, 'empty entity ID'],
    [new NotFoundError('no such entity'), grpc.status.NOT_FOUND, 'no such entity'],
    [new MessageTooLargeError('too big'), grpc.status.RESOURCE_EXHAUSTED, 'too big'],
    [new DeadlineExceededError('handler too slow'), grpc.status.DEADLINE_EXCEEDED, 'handler too slow'],
    [new HandlerUnavailableError(LEAK, { publicMessage: 'write handler unavailable' }), grpc.status.UNAVAILABLE, 'write handler unavailable'],
    [new HandlerUnavailableError(LEAK), grpc.status.UNAVAILABLE, 'handler unavailable'],
    [new ShuttingDownError('shutting down'), grpc.status.UNAVAILABLE, 'shutting down'],
    [new StoreError(LEAK), grpc.status.UNAVAILABLE, 'the store failed or could not be reached; nothing was written'],
    [new CommitOutcomeUnknownError(LEAK), grpc.status.UNKNOWN, new CommitOutcomeUnknownError('').publicMessage],
    [new FencedError('shard taken over; nothing written'), grpc.status.UNAVAILABLE, 'shard taken over; nothing written'],
    [new UnauthenticatedError('no valid proof'), grpc.status.UNAUTHENTICATED, 'no valid proof'],
    [new PermissionDeniedError('not an admin credential'), grpc.status.PERMISSION_DENIED, 'not an admin credential'],
    [new JournalConflictError('e', 1n), grpc.status.ABORTED, 'entity "e" has moved past revision 1'],
  ])('maps %s to its status, with its public message', async (error, code, message) => {
    scripted.setBehaviour(async () => {
      throw error;
    });
    const e = await failure(send('acc-1'));
    expect(e.code).toBe(code);
    expect(e.details).toBe(message);
  });

  it.each([
    ['an unexpected Error', new Error(LEAK)],
    ['an InternalError', new InternalError(LEAK)],
  ])('answers %s with INTERNAL and only an error id', async (_, error) => {
    scripted.setBehaviour(async () => {
      throw error;
    });
    const e = await failure(send('acc-1'));
    expect(e.code).toBe(grpc.status.INTERNAL);
    expect(e.details).toMatch(/^internal error; look up error id [0-9a-f]{12} in the chief-of-state log$/);
    expect(e.details).not.toContain('hunter2');
    expect(e.details).not.toContain('10.1.2.3');
  });

  it("passes a handler's status, message and rich details through unchanged", async () => {
    const detail = { typeUrl: 'type.googleapis.com/chief_of_state.v1.Header', value: new Uint8Array([10, 1, 107]) };
    scripted.setBehaviour(async () => {
      throw new HandlerFailedError(grpc.status.FAILED_PRECONDITION, 'insufficient funds: balance 5 < 10 (100% used, café)', [detail]);
    });
    const e = await failure(send('acc-1'));
    expect(e.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(e.details).toBe('insufficient funds: balance 5 < 10 (100% used, café)');
    const status = decodeRpcStatus(e.metadata.get('grpc-status-details-bin')[0] as Buffer);
    expect(status.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(status.details.map((d) => [d.typeUrl, Array.from(d.value)])).toEqual([[detail.typeUrl, [10, 1, 107]]]);
  });

  it("still delivers a handler's status when its message and details are too large for a trailer, on both paths", async () => {
    // Node refuses to send a header block over 64 KiB: the caller would read INTERNAL (RST_STREAM)
    const detail = { typeUrl: 'example.com/custom/x.v1.Custom', value: new Uint8Array(100_000) };
    scripted.setBehaviour(async () => {
      throw new HandlerFailedError(grpc.status.FAILED_PRECONDITION, `${'é'.repeat(50_000)} end`, [detail]);
    });
    const gzip = createGrpcJsClient({
      service: ChiefOfStateService,
      address: `127.0.0.1:${server.port}`,
      channelOptions: { 'grpc.default_compression_algorithm': 2 },
    });
    try {
      for (const c of [client, gzip]) {
        const e = await failure(
          c.unary(ChiefOfStateService.method.processCommand, create(ProcessCommandRequestSchema, { entityId: 'a', command })),
        );
        expect(e.code).toBe(grpc.status.FAILED_PRECONDITION);
        expect(e.details).toMatch(/^(é)+\.\.\. \(cut\)$/);
        expect(e.metadata.get('grpc-status-details-bin')).toEqual([]);
      }
    } finally {
      gzip.close();
    }
  });

  it('refuses messages over the limit with RESOURCE_EXHAUSTED and keeps serving', async () => {
    const big = create(AnySchema, { typeUrl: 'type.googleapis.com/x.Big', value: new Uint8Array(MAX + 1) });
    const e = await failure(
      client.unary(ChiefOfStateService.method.processCommand, create(ProcessCommandRequestSchema, { entityId: 'a', command: big })),
    );
    expect(e.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(scripted.calls).toHaveLength(0);
    const { response } = await send('still-serving');
    expect(response.meta?.entityId).toBe('still-serving');
  });

  it('answers GetState and maps NOT_FOUND', async () => {
    const { response } = await client.unary(ChiefOfStateService.method.getState, create(GetStateRequestSchema, { entityId: 'x' }));
    expect(response.meta?.revisionNumber).toBe(3);
    const e = await failure(
      client.unary(ChiefOfStateService.method.getState, create(GetStateRequestSchema, { entityId: 'missing' })),
    );
    expect(e.code).toBe(grpc.status.NOT_FOUND);
  });

  it('reports health through grpc.health.v1 Check and Watch', async () => {
    const healthClient = createGrpcJsClient({ service: Health, address: `127.0.0.1:${server.port}` });
    try {
      const check = () => healthClient.unary(Health.method.check, create(HealthCheckRequestSchema, { service: '' }));
      expect((await check()).response.status).toBe(ServingStatus.NOT_SERVING);
      const connect = createClient(Health, createGrpcTransport({ baseUrl: `http://127.0.0.1:${server.port}` }));
      const abort = new AbortController();
      const seen: ServingStatus[] = [];
      const watching = (async () => {
        for await (const update of connect.watch({ service: '' }, { signal: abort.signal })) {
          seen.push(update.status);
          if (seen.length === 2) abort.abort();
        }
      })().catch(() => {});
      await expect.poll(() => seen).toEqual([ServingStatus.NOT_SERVING]);
      health.set('', ServingStatus.SERVING);
      await watching;
      expect(seen).toEqual([ServingStatus.NOT_SERVING, ServingStatus.SERVING]);
      expect((await check()).response.status).toBe(ServingStatus.SERVING);
      const unknown = await failure(healthClient.unary(Health.method.check, create(HealthCheckRequestSchema, { service: 'nope' })));
      expect(unknown.code).toBe(grpc.status.NOT_FOUND);
    } finally {
      healthClient.close();
    }
  });
});

describe('graceful close', () => {
  it('lets an in-flight call finish, then stops', async () => {
    const scripted = scriptedProcessor();
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    scripted.setBehaviour(async (request) => {
      await held;
      return { state: create(AnySchema), meta: create(MetaDataSchema, { entityId: request.entityId }) };
    });
    const server = await startGrpcServer({
      host: '127.0.0.1',
      port: 0,
      maxMessageBytes: MAX,
      routes: (router) =>
        router.service(
          ChiefOfStateService,
          createChiefOfStateService({ processor: scripted.processor, headers: { propagated: [], persisted: [] }, commandTimeoutMs: 5000 }),
        ),
    });
    const client = createGrpcJsClient({ service: ChiefOfStateService, address: `127.0.0.1:${server.port}` });
    const inFlight = client.unary(ChiefOfStateService.method.processCommand, create(ProcessCommandRequestSchema, { entityId: 'slow' }));
    await expect.poll(() => scripted.calls.length).toBe(1);
    const closed = server.close(5000);
    release();
    const { response } = await inFlight;
    expect(response.meta?.entityId).toBe('slow');
    await closed;
    client.close();
    const late = createGrpcJsClient({ service: ChiefOfStateService, address: `127.0.0.1:${server.port}` });
    const e = await late
      .unary(ChiefOfStateService.method.processCommand, create(ProcessCommandRequestSchema, { entityId: 'late' }), { deadline: Date.now() + 1000 })
      .catch((error: grpc.ServiceError) => error);
    expect((e as grpc.ServiceError).code).toBe(grpc.status.UNAVAILABLE);
    late.close();
  });
});

describe('unary gRPC path and the Connect adapter side by side', () => {
  const scripted = scriptedProcessor();
  const intercepted: string[] = [];
  const recorder: Interceptor = (next) => async (request) => {
    intercepted.push(`${request.service.typeName}/${request.method.name} tenant=${request.header.get('x-tenant')}`);
    try {
      const response = await next(request);
      intercepted.push('ok');
      return response;
    } catch (error) {
      intercepted.push(`failed ${ConnectError.from(error).code}`);
      throw error;
    }
  };
  let server: GrpcServer;
  let client: GrpcJsClient;
  const request = (entityId: string) => create(ProcessCommandRequestSchema, { entityId });

  beforeAll(async () => {
    server = await startGrpcServer({
      host: '127.0.0.1',
      port: 0,
      maxMessageBytes: MAX,
      interceptors: [recorder],
      routes: (router) =>
        router.service(
          ChiefOfStateService,
          createChiefOfStateService({ processor: scripted.processor, headers: { propagated: [], persisted: [] }, commandTimeoutMs: 5000 }),
        ),
    });
    client = createGrpcJsClient({ service: ChiefOfStateService, address: `127.0.0.1:${server.port}` });
  });
  afterAll(async () => {
    client.close();
    await server.close(100);
  });
  beforeEach(() => {
    intercepted.length = 0;
    scripted.calls.length = 0;
    scripted.setBehaviour(async (r) => ({ state: create(AnySchema), meta: create(MetaDataSchema, { entityId: r.entityId, revisionNumber: 7 }) }));
  });

  it('runs the interceptors around a gRPC call, with its headers and outcome', async () => {
    const metadata = new grpc.Metadata();
    metadata.set('x-tenant', 'acme');
    await client.unary(ChiefOfStateService.method.processCommand, request('a'), { metadata });
    scripted.setBehaviour(async () => {
      throw new NotFoundError('nope');
    });
    await client.unary(ChiefOfStateService.method.processCommand, request('b')).catch(() => {});
    expect(intercepted).toEqual([
      'chief_of_state.v1.ChiefOfStateService/ProcessCommand tenant=acme',
      'ok',
      'chief_of_state.v1.ChiefOfStateService/ProcessCommand tenant=null',
      `failed ${Code.NotFound}`,
    ]);
  });

  it('aborts the signal the command gets when the caller’s deadline passes', async () => {
    let reason: unknown;
    scripted.setBehaviour(
      (r) =>
        new Promise((_resolve, reject) =>
          r.signal!.addEventListener('abort', () => {
            reason = r.signal!.reason;
            reject(reason as Error);
          }),
        ),
    );
    const started = performance.now();
    const error = await client
      .unary(ChiefOfStateService.method.processCommand, request('slow'), { deadline: Date.now() + 200 })
      .catch((e: grpc.ServiceError) => e);
    expect((error as grpc.ServiceError).code).toBe(grpc.status.DEADLINE_EXCEEDED);
    await expect.poll(() => reason).toBeDefined();
    expect(performance.now() - started).toBeLessThan(1500);
    expect([Code.DeadlineExceeded, Code.Canceled]).toContain(ConnectError.from(reason).code);
  });

  it('answers DEADLINE_EXCEEDED at the deadline the caller sent when the work never ends, on both paths', async () => {
    // grpc-timeout sent without a client-side deadline: what is measured is when the server answers
    scripted.setBehaviour(() => new Promise(() => {}));
    const metadata = new grpc.Metadata();
    metadata.set('grpc-timeout', '300m');
    let started = performance.now();
    const viaGrpc = await client.unary(ChiefOfStateService.method.processCommand, request('stuck'), { metadata }).catch((e: grpc.ServiceError) => e);
    const grpcMs = performance.now() - started;
    expect((viaGrpc as grpc.ServiceError).code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect((viaGrpc as grpc.ServiceError).details).toMatch(/may or may not have been applied/);

    const connect = createClient(ChiefOfStateService, createConnectTransport({ baseUrl: `http://127.0.0.1:${server.port}`, httpVersion: '2' }));
    started = performance.now();
    const viaConnect = await connect.processCommand({ entityId: 'stuck' }, { headers: { 'connect-timeout-ms': '300' } }).catch((e: unknown) => e);
    const connectMs = performance.now() - started;
    expect(ConnectError.from(viaConnect).code).toBe(Code.DeadlineExceeded);
    // the deadline, not the 5 s command timeout, ended both
    expect(Math.max(grpcMs, connectMs)).toBeLessThan(3000);
    expect(Math.min(grpcMs, connectMs)).toBeGreaterThanOrEqual(250);
  });

  it('still serves the Connect protocol, gRPC-Web and compressed gRPC requests (through Connect)', async () => {
    const baseUrl = `http://127.0.0.1:${server.port}`;
    for (const transport of [
      createConnectTransport({ baseUrl, httpVersion: '2' }),
      createGrpcWebTransport({ baseUrl, httpVersion: '2' }),
    ]) {
      const connect = createClient(ChiefOfStateService, transport);
      const response = await connect.processCommand({ entityId: 'via-connect' });
      expect(response.meta?.revisionNumber).toBe(7);
    }
    const gzip = createGrpcJsClient({
      service: ChiefOfStateService,
      address: `127.0.0.1:${server.port}`,
      channelOptions: { 'grpc.default_compression_algorithm': 2 },
    });
    try {
      const { response } = await gzip.unary(ChiefOfStateService.method.processCommand, request('zipped'));
      expect(response.meta?.entityId).toBe('zipped');
    } finally {
      gzip.close();
    }
    expect(scripted.calls.map((c) => c.entityId)).toEqual(['via-connect', 'via-connect', 'zipped']);
  });
});

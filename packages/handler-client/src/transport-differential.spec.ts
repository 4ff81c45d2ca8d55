// The differential suite of the client side: every call below is made twice, through the
// hand-written transport (createGrpcTransport, the default) and through Connect's own gRPC
// transport (`fastTransport: false`), against the same real server, and what the caller can
// observe must be identical: the response, its headers and trailers, the error (class, gRPC
// code, message, google.rpc.Status details, metadata), what the server received, and whether
// it saw the call cancelled. Servers: @grpc/grpc-js, the reference implementation; Connect's
// node server for compressed answers (grpc-js never compresses what it sends).
import { create, toBinary } from '@bufbuild/protobuf';
import { anyPack } from '@bufbuild/protobuf/wkt';
import { StringValueSchema } from '@bufbuild/protobuf/wkt';
import * as grpc from '@grpc/grpc-js';
import { Code, ConnectError, type Interceptor } from '@connectrpc/connect';
import { HandlerFailedError } from '@chiefofstate/core';
import {
  HandleCommandRequestSchema,
  HandleCommandResponseSchema,
  WriteSideHandlerService,
  emptyState,
  type HandleCommandRequest,
  type HandleCommandResponse,
} from '@chiefofstate/protocol';
import {
  encodeRpcStatus,
  freePort,
  grpcJsServiceDefinition,
  pollUntil,
  startTcpProxy,
  startTestGrpcServer,
  type TcpProxy,
  type TestGrpcServer,
} from '@chiefofstate/testing';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { HandlerCallOptions } from './transport.js';
import { createWriteSideClient, type WriteSideClient } from './write-side-client.js';

type Kind = 'fast' | 'stock';
const KINDS: readonly Kind[] = ['fast', 'stock'];

/** Request headers each transport sets for itself (its name, what it accepts): not the caller's. */
const TRANSPORT_HEADERS = new Set(['user-agent', 'grpc-accept-encoding', 'accept-encoding']);

type Reply = (error: grpc.ServerErrorResponse | null, response?: HandleCommandResponse, trailer?: grpc.Metadata) => void;
type Behaviour = (request: HandleCommandRequest, call: grpc.ServerUnaryCall<HandleCommandRequest, HandleCommandResponse>, reply: Reply) => void;

interface ServerSide {
  metadata: [string, string][];
  /** the grpc-timeout it got, as a deadline more than now and at most the call's timeout */
  deadlineWithin: number | undefined;
  requestBytes: number;
  cancelled: boolean;
}

interface Observed {
  outcome:
    | { ok: true; response: string; header: [string, string][]; trailer: [string, string][] }
    | {
        ok: false;
        error: string;
        publicMessage?: string;
        statusCode?: number;
        statusMessage?: string;
        details?: [string, string][];
        connectCode?: Code;
        connectMetadata?: [string, string][];
        rootCode?: string;
      };
  server: ServerSide[];
}

/** Entries in a stable order; the server's `date` header is the second it answered in, so only its presence counts. */
const sorted = (entries: Iterable<[string, string]>): [string, string][] =>
  [...entries].map(([name, value]): [string, string] => [name, name === 'date' ? '<date>' : value]).sort(([a, x], [b, y]) => (a === b ? x.localeCompare(y) : a.localeCompare(b)));

function metadataEntries(metadata: grpc.Metadata): [string, string][] {
  const entries: [string, string][] = [];
  for (const [key, values] of Object.entries(metadata.toJSON())) {
    if (TRANSPORT_HEADERS.has(key)) continue;
    for (const value of values) entries.push([key, Buffer.isBuffer(value) ? `bytes:${value.toString('hex')}` : String(value)]);
  }
  return sorted(entries);
}

function rootCode(error: unknown): string | undefined {
  let reason: unknown = error;
  let code: string | undefined;
  for (let depth = 0; depth < 10 && reason instanceof Error; depth++) {
    const own = (reason as { code?: unknown }).code;
    if (typeof own === 'string' && /^E[A-Z]+$/.test(own)) code = own;
    reason = reason.cause;
  }
  return code;
}

const payload = (bytes: number) => anyPack(StringValueSchema, create(StringValueSchema, { value: 'x'.repeat(bytes) }));
const request = (command = emptyState()): HandleCommandRequest =>
  create(HandleCommandRequestSchema, { command, priorState: emptyState() });

describe('the fast client transport against Connect\'s own, on the same servers', () => {
  let behave: Behaviour;
  let calls: { call: grpc.ServerUnaryCall<HandleCommandRequest, HandleCommandResponse>; side: ServerSide }[] = [];
  let server: grpc.Server;
  let port: number;
  const clients: WriteSideClient[] = [];

  beforeAll(async () => {
    server = new grpc.Server();
    server.addService(grpcJsServiceDefinition(WriteSideHandlerService), {
      handleCommand: (call: grpc.ServerUnaryCall<HandleCommandRequest, HandleCommandResponse>, callback: grpc.sendUnaryData<HandleCommandResponse>) => {
        const deadline = call.getDeadline();
        const side: ServerSide = {
          metadata: metadataEntries(call.metadata),
          deadlineWithin: Number.isFinite(Number(deadline)) ? Number(deadline) - Date.now() : undefined,
          requestBytes: toBinary(HandleCommandRequestSchema, call.request).byteLength,
          cancelled: false,
        };
        call.on('cancelled', () => (side.cancelled = true));
        calls.push({ call, side });
        behave(call.request, call, (error, response, trailer) =>
          error ? callback(error) : callback(null, response, trailer),
        );
      },
    });
    port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
    );
  });
  afterAll(() => server.forceShutdown());
  afterEach(async () => {
    for (const client of clients.splice(0)) await client.close();
    calls = [];
  });

  /** What each transport's caller observes of the same call (made once per transport, in turn). */
  async function observeBoth(
    call: (client: WriteSideClient, kind: Kind) => Promise<HandleCommandResponse>,
    options: { port?: number; timeoutMs?: number; maxMessageBytes?: number } = {},
  ): Promise<Record<Kind, Observed>> {
    const result = {} as Record<Kind, Observed>;
    for (const kind of KINDS) {
      calls = [];
      let header: Headers | undefined;
      let trailer: Headers | undefined;
      const record: Interceptor = (next) => async (req) => {
        const res = await next(req);
        header = res.header;
        trailer = res.trailer;
        return res;
      };
      const client = createWriteSideClient({
        host: '127.0.0.1',
        port: options.port ?? port,
        timeoutMs: options.timeoutMs ?? 5000,
        ...(options.maxMessageBytes !== undefined ? { maxMessageBytes: options.maxMessageBytes } : {}),
        interceptors: [record],
        fastTransport: kind === 'fast',
      });
      clients.push(client);
      let outcome: Observed['outcome'];
      try {
        const response = await call(client, kind);
        outcome = {
          ok: true,
          response: Buffer.from(toBinary(HandleCommandResponseSchema, response)).toString('hex'),
          header: sorted(header ? [...header.entries()] : []),
          trailer: sorted(trailer ? [...trailer.entries()] : []),
        };
      } catch (error) {
        const cause = (error as Error).cause;
        const raw = cause instanceof ConnectError ? cause : undefined;
        outcome = {
          ok: false,
          error: (error as Error).constructor.name,
          ...((error as { publicMessage?: string }).publicMessage !== undefined
            ? { publicMessage: (error as { publicMessage: string }).publicMessage }
            : {}),
          ...(error instanceof HandlerFailedError
            ? {
                statusCode: error.statusCode,
                statusMessage: error.statusMessage,
                details: error.details.map((d) => [d.typeUrl, Buffer.from(d.value).toString('hex')] as [string, string]),
              }
            : {}),
          ...(raw
            ? {
                connectCode: raw.code,
                // the metadata a caller reads off the error: the handler's headers and trailers
                connectMetadata: sorted(raw.metadata.entries()),
              }
            : {}),
          ...(rootCode(error) ? { rootCode: rootCode(error)! } : {}),
        };
      }
      result[kind] = { outcome, server: calls.map((c) => ({ ...c.side, deadlineWithin: c.side.deadlineWithin === undefined ? undefined : 1 })) };
    }
    return result;
  }

  it('a unary call: response, headers and trailers (text and -bin), the caller\'s metadata as the server got it', async () => {
    behave = (req, call, reply) => {
      const headers = new grpc.Metadata();
      headers.set('x-answer', 'header');
      headers.set('x-answer-bin', Buffer.from([0, 1, 2, 255]));
      call.sendMetadata(headers);
      const trailer = new grpc.Metadata();
      trailer.set('x-trailer', 'trailer value');
      trailer.set('x-trailer-bin', Buffer.from('ünï', 'utf8'));
      reply(null, create(HandleCommandResponseSchema, { events: [req.command!] }), trailer);
    };
    const headers = {
      'x-tenant': 'acme',
      'x-blob-bin': Buffer.from([0xde, 0xad, 0xbe, 0xef, 0]).toString('base64'),
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    };
    const seen = await observeBoth((client) => client.handleCommand(request(payload(10)), { headers }));
    expect(seen.fast).toEqual(seen.stock);
    expect(seen.fast.outcome).toMatchObject({ ok: true });
    const ok = seen.fast.outcome as Extract<Observed['outcome'], { ok: true }>;
    expect(ok.header).toEqual(expect.arrayContaining([['x-answer', 'header'], ['x-answer-bin', 'AAEC/w==']]));
    expect(ok.trailer).toEqual(expect.arrayContaining([['x-trailer', 'trailer value']]));
    expect(seen.fast.server[0]!.metadata).toEqual(
      expect.arrayContaining([['x-tenant', 'acme'], ['x-blob-bin', 'bytes:deadbeef00']]),
    );
  });

  const STATUSES = Array.from({ length: 16 }, (_, i) => i + 1);
  it.each(STATUSES)('status %i with google.rpc.Status details and trailers, trailers-only and after headers', async (code) => {
    for (const afterHeaders of [false, true]) {
      const message = `refused: ünïcødé 100% \t "quoted" (${code})`;
      behave = (_req, call, reply) => {
        if (afterHeaders) call.sendMetadata(new grpc.Metadata());
        const trailer = new grpc.Metadata();
        trailer.set('x-reason', 'why');
        trailer.set('x-reason-bin', Buffer.from([7, 8, 9]));
        trailer.set(
          'grpc-status-details-bin',
          Buffer.from(
            encodeRpcStatus({
              code,
              message,
              details: [
                { typeUrl: 'type.googleapis.com/google.protobuf.StringValue', value: toBinary(StringValueSchema, create(StringValueSchema, { value: 'detail' })) },
                { typeUrl: 'example.com/custom.Detail', value: Uint8Array.from([1, 2, 3]) },
              ],
            }),
          ),
        );
        reply(Object.assign(new Error(message), { code, details: message, metadata: trailer }));
      };
      const seen = await observeBoth((client) => client.handleCommand(request()));
      expect(seen.fast, `afterHeaders=${afterHeaders}`).toEqual(seen.stock);
      expect(seen.fast.outcome).toMatchObject({ ok: false, error: 'HandlerFailedError', statusCode: code, statusMessage: message });
      expect((seen.fast.outcome as { details: unknown[] }).details).toHaveLength(2);
    }
  });

  it('the deadline: sent as grpc-timeout, the call fails DeadlineExceededError when the handler is slower', async () => {
    behave = () => undefined; // never answers
    const seen = await observeBoth((client) => client.handleCommand(request()), { timeoutMs: 200 });
    expect(seen.fast).toEqual(seen.stock);
    expect(seen.fast.outcome).toMatchObject({ ok: false, error: 'DeadlineExceededError', connectCode: Code.DeadlineExceeded });
    expect(seen.fast.server[0]!.deadlineWithin).toBe(1);
  });

  it('cancellation: the caller\'s abort reason, and the server sees the call cancelled', async () => {
    behave = () => undefined;
    const reason = new Error('caller went away');
    const seen = await observeBoth(async (client) => {
      const controller = new AbortController();
      const pending = client.handleCommand(request(), { signal: controller.signal });
      await pollUntil(() => calls.length === 1, 5000, 'the server got the call', 5);
      controller.abort(reason);
      try {
        return await pending;
      } finally {
        await pollUntil(() => calls[0]!.side.cancelled, 5000, 'the server saw the call cancelled', 5);
      }
    });
    expect(seen.fast).toEqual(seen.stock);
    expect(seen.fast.outcome).toEqual({ ok: false, error: 'Error' });
    expect(seen.fast.server[0]!.cancelled).toBe(true);
  });

  it('empty and large messages both ways', async () => {
    behave = (req, _call, reply) =>
      reply(null, req.command === undefined ? create(HandleCommandResponseSchema) : create(HandleCommandResponseSchema, { events: [req.command] }));
    const empty = await observeBoth((client) => client.handleCommand(create(HandleCommandRequestSchema)));
    expect(empty.fast).toEqual(empty.stock);
    expect(empty.fast.outcome).toMatchObject({ ok: true, response: '' });
    expect(empty.fast.server[0]!.requestBytes).toBe(0);

    const large = await observeBoth((client) => client.handleCommand(request(payload(3 * 1024 * 1024))));
    expect(large.fast).toEqual(large.stock);
    expect(large.fast.outcome).toMatchObject({ ok: true });
    expect(large.fast.server[0]!.requestBytes).toBeGreaterThan(3 * 1024 * 1024);
  });

  it('messages over the limit: a request is not sent, an answer is refused', async () => {
    behave = (req, _call, reply) => reply(null, create(HandleCommandResponseSchema, { events: [payload(200_000)] }));
    const request_ = await observeBoth((client) => client.handleCommand(request(payload(200_000))), { maxMessageBytes: 100_000 });
    expect(request_.fast).toEqual(request_.stock);
    expect(request_.fast.outcome).toMatchObject({ ok: false, error: 'MessageTooLargeError', connectCode: Code.ResourceExhausted });
    expect(request_.fast.server).toEqual([]);

    const answer = await observeBoth((client) => client.handleCommand(request()), { maxMessageBytes: 100_000 });
    expect(answer.fast).toEqual(answer.stock);
    expect(answer.fast.outcome).toMatchObject({ ok: false, error: 'MessageTooLargeError', connectCode: Code.ResourceExhausted });
  });

  it('connection loss mid-call: HandlerUnavailableError', async () => {
    behave = () => undefined;
    let proxy: TcpProxy | undefined;
    try {
      proxy = await startTcpProxy({ host: '127.0.0.1', port });
      const cutting = proxy;
      const seen = await observeBoth(
        async (client) => {
          cutting.restore();
          const pending = client.handleCommand(request());
          await pollUntil(() => calls.length === 1, 5000, 'the server got the call', 5);
          cutting.cut();
          try {
            return await pending;
          } finally {
            await pollUntil(() => calls[0]!.side.cancelled, 5000, 'the server saw the call end', 5);
          }
        },
        { port: proxy.port },
      );
      // The one known difference, under the COS error both agree on: Connect's transport calls a
      // reset connection CANCELED or ABORTED (from the HTTP/2 code it happens to see first), the
      // fast one UNAVAILABLE, as grpc-js does ("Connection dropped"); the socket's error is
      // attached when it came before the stream's end.
      const { connectCode: fastCode, rootCode: fastRoot, ...fast } = seen.fast.outcome as { connectCode: Code; rootCode?: string };
      const { connectCode: stockCode, rootCode: stockRoot, ...stock } = seen.stock.outcome as { connectCode: Code; rootCode?: string };
      expect({ ...seen.fast, outcome: fast }).toEqual({ ...seen.stock, outcome: stock });
      expect(fast).toMatchObject({ ok: false, error: 'HandlerUnavailableError', publicMessage: 'write handler unavailable' });
      expect(fastCode, `fast ${fastCode} ${fastRoot}`).toBe(Code.Unavailable);
      expect([Code.Canceled, Code.Aborted, Code.Unavailable], `stock ${stockCode} ${stockRoot}`).toContain(stockCode);
    } finally {
      await proxy?.close();
    }
  });

  it('nothing listening: HandlerUnavailableError caused by ECONNREFUSED', async () => {
    const seen = await observeBoth((client) => client.handleCommand(request()), { port: await freePort() });
    expect(seen.fast).toEqual(seen.stock);
    expect(seen.fast.outcome).toMatchObject({ ok: false, error: 'HandlerUnavailableError', connectCode: Code.Unavailable, rootCode: 'ECONNREFUSED' });
  });

  describe('compressed answers (Connect\'s node server, which gzips for a caller accepting it)', () => {
    let connectServer: TestGrpcServer;
    beforeAll(async () => {
      connectServer = await startTestGrpcServer((router) =>
        router.service(WriteSideHandlerService, {
          handleCommand: (req) => create(HandleCommandResponseSchema, { events: [req.command!, payload(50_000)] }),
          handleEvent: () => {
            throw new ConnectError('not here', Code.Unimplemented);
          },
        }),
      );
    });
    afterAll(() => connectServer.stop());

    it('reads a gzip answer alike', async () => {
      const call: HandlerCallOptions = { headers: { 'grpc-accept-encoding': 'gzip' } };
      const seen = await observeBoth((client) => client.handleCommand(request(payload(10)), call), { port: connectServer.port });
      expect(seen.fast).toEqual(seen.stock);
      expect(seen.fast.outcome).toMatchObject({ ok: true, header: expect.arrayContaining([['grpc-encoding', 'gzip']]) });
    });
  });
});

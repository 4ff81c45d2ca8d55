// The differential suite of the server side: the same requests, sent by a stock @grpc/grpc-js
// client, to two servers with the same routes and interceptors, one with the hand-written unary
// path (createUnaryGrpc, the default) and one without it (`unaryFastPath: false`: Connect's node
// adapter serves every call). What the client observes (status, message, google.rpc.Status
// details, response headers, trailers, the response) and what the implementation observes (the
// request, its headers, its deadline, its signal) must be identical.
import { create, toBinary } from '@bufbuild/protobuf';
import { anyPack, StringValueSchema } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError, type HandlerContext, type Interceptor } from '@connectrpc/connect';
import * as grpc from '@grpc/grpc-js';
import { connect } from 'node:http2';
import {
  HandleCommandRequestSchema,
  HandleCommandResponseSchema,
  WriteSideHandlerService,
  emptyState,
  type HandleCommandRequest,
  type HandleCommandResponse,
} from '@chiefofstate/protocol';
import { createGrpcJsClient, decodeRpcStatus, pollUntil, startTcpProxy, type GrpcJsClient, type TcpProxy } from '@chiefofstate/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGrpcServer, type GrpcServer } from './grpc-server.js';

type Path = 'fast' | 'connect';
const PATHS: readonly Path[] = ['fast', 'connect'];
const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

type Behaviour = (request: HandleCommandRequest, context: HandlerContext) => Promise<HandleCommandResponse> | HandleCommandResponse;

interface ImplementationSide {
  requestBytes: number;
  headers: [string, string][];
  /** the remaining time it was given, rounded to the deadline's 100 ms bucket */
  timeoutBucket: number | undefined;
  /** the first abort of its signal: the reason's code and message, undefined when not a ConnectError */
  aborted?: { code: Code | undefined; message?: string };
}

interface Observed {
  code: grpc.status;
  message: string;
  /** google.rpc.Status from grpc-status-details-bin, decoded */
  details?: { code: number; message: string; details: [string, string][] };
  headers: [string, string][];
  trailers: [string, string][];
  response?: string;
  implementation: ImplementationSide[];
}

/** grpc-js's own DEADLINE_EXCEEDED message, less the timings and port that differ from call to call. */
const stable = (code: grpc.status, message: string) =>
  code === grpc.status.DEADLINE_EXCEEDED && message.startsWith('Deadline exceeded after') ? 'Deadline exceeded after <timings>' : message;

/** Entries in a stable order; the answer's `date` is the second it was sent in, so only its presence counts. */
function entries(metadata: grpc.Metadata | undefined): [string, string][] {
  const out: [string, string][] = [];
  for (const [key, values] of Object.entries(metadata?.toJSON() ?? {})) {
    for (const value of values) {
      out.push([key, key === 'date' ? '<date>' : Buffer.isBuffer(value) ? `bytes:${value.toString('hex')}` : String(value)]);
    }
  }
  return out.sort(([a, x], [b, y]) => (a === b ? x.localeCompare(y) : a.localeCompare(b)));
}

const payload = (bytes: number) => anyPack(StringValueSchema, create(StringValueSchema, { value: 'x'.repeat(bytes) }));
const request = (command = emptyState()): HandleCommandRequest => create(HandleCommandRequestSchema, { command, priorState: emptyState() });

describe('the unary fast path against Connect\'s adapter, seen by a stock @grpc/grpc-js client', () => {
  let behave: Behaviour;
  let seen: ImplementationSide[] = [];
  const servers = {} as Record<Path, GrpcServer>;
  const clients = {} as Record<Path, GrpcJsClient>;
  const gzipClients = {} as Record<Path, GrpcJsClient>;

  // an interceptor on both paths: the same headers and trailers must come of it
  const stamp: Interceptor = (next) => async (req) => {
    const res = await next(req);
    res.header.set('x-intercepted', req.method.name);
    res.trailer.set('x-intercepted-trailer', 'yes');
    return res;
  };

  beforeAll(async () => {
    for (const path of PATHS) {
      servers[path] = await startGrpcServer({
        host: '127.0.0.1',
        port: 0,
        maxMessageBytes: MAX_MESSAGE_BYTES,
        unaryFastPath: path === 'fast',
        interceptors: [stamp],
        routes: (router) =>
          router.service(WriteSideHandlerService, {
            handleCommand: async (req, context) => {
              const side: ImplementationSide = {
                requestBytes: toBinary(HandleCommandRequestSchema, req).byteLength,
                // grpc-timeout is the client's remaining time, which varies: timeoutBucket stands for it
                headers: [...context.requestHeader.entries()].filter(([name]) => name !== 'grpc-timeout').sort(([a], [b]) => a.localeCompare(b)),
                timeoutBucket: (() => {
                  const ms = context.timeoutMs();
                  return ms === undefined ? undefined : Math.ceil(ms / 100);
                })(),
              };
              context.signal.addEventListener('abort', () => {
                const reason: unknown = context.signal.reason;
                side.aborted ??= reason instanceof ConnectError ? { code: reason.code, message: reason.rawMessage } : { code: undefined };
              });
              seen.push(side);
              return behave(req, context);
            },
            handleEvent: () => {
              throw new ConnectError('not here', Code.Unimplemented);
            },
          }),
      });
      const address = `127.0.0.1:${servers[path].port}`;
      clients[path] = createGrpcJsClient({ service: WriteSideHandlerService, address });
      gzipClients[path] = createGrpcJsClient({
        service: WriteSideHandlerService,
        address,
        channelOptions: { 'grpc.default_compression_algorithm': 2 },
      });
    }
  });
  afterAll(async () => {
    for (const path of PATHS) {
      clients[path].close();
      gzipClients[path].close();
      await servers[path].close(0);
    }
  });

  /** One call as grpc-js makes it; resolves with everything it observed. */
  function call(
    client: GrpcJsClient,
    req: HandleCommandRequest,
    options: { metadata?: grpc.Metadata; deadline?: Date; whileOpen?: (call: grpc.ClientUnaryCall) => void } = {},
  ): Promise<Omit<Observed, 'implementation'>> {
    return new Promise((resolve) => {
      let headers: grpc.Metadata | undefined;
      let response: HandleCommandResponse | undefined;
      const raw = client.raw as unknown as Record<
        string,
        (r: unknown, m: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: HandleCommandResponse) => void) => grpc.ClientUnaryCall
      >;
      const started = raw['handleCommand']!.call(
        client.raw,
        req,
        options.metadata ?? new grpc.Metadata(),
        options.deadline ? { deadline: options.deadline } : {},
        (_error, value) => {
          response = value;
        },
      );
      started.on('metadata', (m: grpc.Metadata) => (headers = m));
      started.on('status', (status: grpc.StatusObject) => {
        // the callback runs before 'status' in grpc-js; leave it a turn anyway
        setImmediate(() => {
          const detailsBin = status.metadata.get('grpc-status-details-bin')[0];
          const details = Buffer.isBuffer(detailsBin) ? decodeRpcStatus(detailsBin) : undefined;
          resolve({
            code: status.code,
            message: stable(status.code, status.details),
            ...(details
              ? { details: { ...details, details: details.details.map((d) => [d.typeUrl, Buffer.from(d.value).toString('hex')] as [string, string]) } }
              : {}),
            headers: entries(headers),
            trailers: entries(status.metadata),
            ...(response ? { response: Buffer.from(toBinary(HandleCommandResponseSchema, response)).toString('hex') } : {}),
          });
        });
      });
      options.whileOpen?.(started);
    });
  }

  /** The same call on both servers, in turn. */
  async function observeBoth(
    run: (client: GrpcJsClient, path: Path) => Promise<Omit<Observed, 'implementation'>>,
  ): Promise<Record<Path, Observed>> {
    const result = {} as Record<Path, Observed>;
    for (const path of PATHS) {
      seen = [];
      const observed = await run(clients[path], path);
      result[path] = { ...observed, implementation: seen };
    }
    return result;
  }

  it('a unary call: the response, headers and trailers set by the implementation and an interceptor, -bin both ways', async () => {
    behave = (req, context) => {
      context.responseHeader.set('x-answer', 'header value');
      context.responseHeader.set('x-answer-bin', Buffer.from([0, 1, 254, 255]).toString('base64'));
      context.responseTrailer.set('x-trailer', 'trailer value');
      context.responseTrailer.set('x-trailer-bin', Buffer.from('ünï').toString('base64'));
      return create(HandleCommandResponseSchema, { events: [req.command!] });
    };
    const metadata = new grpc.Metadata();
    metadata.set('x-tenant', 'acme');
    metadata.add('x-many', 'one');
    metadata.add('x-many', 'two');
    metadata.set('x-blob-bin', Buffer.from([0xde, 0xad, 0xbe, 0xef, 0]));
    const seen_ = await observeBoth((client) => call(client, request(payload(10)), { metadata }));
    expect(seen_.fast).toEqual(seen_.connect);
    expect(seen_.fast).toMatchObject({ code: grpc.status.OK });
    expect(seen_.fast.headers).toEqual(
      expect.arrayContaining([['x-answer', 'header value'], ['x-answer-bin', 'bytes:0001feff'], ['x-intercepted', 'HandleCommand']]),
    );
    expect(seen_.fast.trailers).toEqual(expect.arrayContaining([['x-trailer', 'trailer value'], ['x-intercepted-trailer', 'yes']]));
    expect(seen_.fast.implementation[0]!.headers).toEqual(
      expect.arrayContaining([['x-tenant', 'acme'], ['x-many', 'one, two'], ['x-blob-bin', '3q2+7wA=']]),
    );
  });

  const STATUSES = Array.from({ length: 16 }, (_, i) => i + 1);
  it.each(STATUSES)('status %i with details, metadata and a message needing percent-encoding', async (code) => {
    const message = `refused: ünïcødé 100% \t "quoted" ${code}`;
    behave = (_req, context) => {
      context.responseTrailer.set('x-trailer', 'set before failing');
      throw new ConnectError(message, code, { 'x-error-meta': 'meta', 'x-error-bin': Buffer.from([9, 9]).toString('base64') }, [
        { desc: StringValueSchema, value: { value: 'detail' } },
      ]);
    };
    const seen_ = await observeBoth((client) => call(client, request()));
    expect(seen_.fast).toEqual(seen_.connect);
    expect(seen_.fast).toMatchObject({ code, message, details: { code, message } });
    expect(seen_.fast.details!.details).toEqual([
      ['type.googleapis.com/google.protobuf.StringValue', Buffer.from(toBinary(StringValueSchema, create(StringValueSchema, { value: 'detail' }))).toString('hex')],
    ]);
  });

  it('errors come in the same frames as Connect sends them: headers, then the status in trailers', async () => {
    /** Where the status arrived, read with node:http2 (grpc-js hides the difference). */
    const frames = (port: number) =>
      new Promise<{ statusIn: string; headerNames: string[]; bodyBytes: number }>((resolve, reject) => {
        const session = connect(`http://127.0.0.1:${port}`);
        session.on('error', reject);
        const body = toBinary(HandleCommandRequestSchema, request());
        const frame = Buffer.alloc(5 + body.byteLength);
        frame.writeUInt32BE(body.byteLength, 1);
        frame.set(body, 5);
        const stream = session.request({
          ':method': 'POST',
          ':path': `/${WriteSideHandlerService.typeName}/HandleCommand`,
          'content-type': 'application/grpc',
          te: 'trailers',
        });
        let headers: Record<string, unknown> = {};
        let trailers: Record<string, unknown> | undefined;
        let bodyBytes = 0;
        stream.on('response', (h) => (headers = h));
        stream.on('trailers', (t) => (trailers = t));
        stream.on('data', (chunk: Buffer) => (bodyBytes += chunk.byteLength));
        stream.on('close', () => {
          session.close();
          resolve({
            statusIn: headers['grpc-status'] !== undefined ? 'headers (trailers-only)' : trailers?.['grpc-status'] !== undefined ? 'trailers' : 'nowhere',
            headerNames: Object.keys(headers).filter((name) => name !== 'date').sort(),
            bodyBytes,
          });
        });
        stream.end(frame);
      });
    behave = () => {
      throw new ConnectError('no', Code.FailedPrecondition);
    };
    const fast = await frames(servers.fast.port);
    const connectPath = await frames(servers.connect.port);
    expect(fast).toEqual(connectPath);
    expect(fast.bodyBytes).toBe(0);
    expect(fast.statusIn).toBe('trailers');
  });

  it('an error that is not a ConnectError: INTERNAL, its message not sent', async () => {
    behave = () => {
      throw new Error('secret database host');
    };
    const seen_ = await observeBoth((client) => call(client, request()));
    expect(seen_.fast).toEqual(seen_.connect);
    expect(seen_.fast).toMatchObject({ code: grpc.status.INTERNAL, message: 'internal error' });
  });

  it('the deadline: the implementation gets the remaining time, its signal aborts at it', async () => {
    behave = (_req, context) =>
      new Promise((_resolve, reject) => context.signal.addEventListener('abort', () => reject(context.signal.reason as Error)));
    const seen_ = await observeBoth(async (client) => {
      const observed = await call(client, request(), { deadline: new Date(Date.now() + 300) });
      await pollUntil(() => seen[0]?.aborted !== undefined, 5000, 'the implementation saw the deadline', 5);
      // the server's timer (DEADLINE_EXCEEDED) and the client's cancel at its own deadline
      // (CANCEL) race, on either path: which came first is not the path's doing
      const aborted = seen[0]!.aborted!;
      if (aborted.code === Code.Canceled || aborted.code === Code.DeadlineExceeded) seen[0]!.aborted = { code: Code.DeadlineExceeded, message: '<deadline>' };
      return observed;
    });
    expect(seen_.fast).toEqual(seen_.connect);
    expect(seen_.fast).toMatchObject({ code: grpc.status.DEADLINE_EXCEEDED });
    expect(seen_.fast.implementation).toEqual([expect.objectContaining({ timeoutBucket: 3, aborted: { code: Code.DeadlineExceeded, message: '<deadline>' } })]);
  });

  it('cancellation by the caller: CANCELLED, the implementation\'s signal aborted', async () => {
    behave = (_req, context) =>
      new Promise((_resolve, reject) => context.signal.addEventListener('abort', () => reject(context.signal.reason as Error)));
    const seen_ = await observeBoth(async (client) => {
      const observed = await call(client, request(), {
        whileOpen: (started) => void pollUntil(() => seen.length === 1, 5000, 'the call arrived', 5).then(() => started.cancel()),
      });
      await pollUntil(() => seen[0]?.aborted !== undefined, 5000, 'the implementation saw the cancel', 5);
      return observed;
    });
    expect(seen_.fast).toEqual(seen_.connect);
    expect(seen_.fast).toMatchObject({ code: grpc.status.CANCELLED });
    expect(seen_.fast.implementation[0]!.aborted).toBeDefined();
  });

  it('empty and large messages both ways; over the limit: RESOURCE_EXHAUSTED', async () => {
    behave = (req) => (req.command === undefined ? create(HandleCommandResponseSchema) : create(HandleCommandResponseSchema, { events: [req.command, req.command] }));
    const empty = await observeBoth((client) => call(client, create(HandleCommandRequestSchema)));
    expect(empty.fast).toEqual(empty.connect);
    expect(empty.fast).toMatchObject({ code: grpc.status.OK, response: '', implementation: [{ requestBytes: 0 }] });

    const large = await observeBoth((client) => call(client, request(payload(1024 * 1024))));
    expect(large.fast).toEqual(large.connect);
    expect(large.fast).toMatchObject({ code: grpc.status.OK });
    expect(large.fast.response!.length / 2).toBeGreaterThan(2 * 1024 * 1024);

    // the answer (two copies) is over the limit
    const tooLargeAnswer = await observeBoth((client) => call(client, request(payload(3 * 1024 * 1024))));
    expect(tooLargeAnswer.fast).toEqual(tooLargeAnswer.connect);
    expect(tooLargeAnswer.fast).toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED });
  });

  it('a request over the limit: RESOURCE_EXHAUSTED, the implementation not called', async () => {
    behave = () => create(HandleCommandResponseSchema);
    const clientsWithRoom = {} as Record<Path, GrpcJsClient>;
    for (const path of PATHS) {
      clientsWithRoom[path] = createGrpcJsClient({
        service: WriteSideHandlerService,
        address: `127.0.0.1:${servers[path].port}`,
        channelOptions: { 'grpc.max_send_message_length': 16 * 1024 * 1024 },
      });
    }
    try {
      const seen_ = await observeBoth((_client, path) => call(clientsWithRoom[path], request(payload(5 * 1024 * 1024))));
      expect(seen_.fast).toEqual(seen_.connect);
      expect(seen_.fast).toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED, implementation: [] });
    } finally {
      for (const path of PATHS) clientsWithRoom[path].close();
    }
  });

  it('compressed requests (gzip) are answered alike', async () => {
    behave = (req) => create(HandleCommandResponseSchema, { events: [req.command!] });
    const seen_ = await observeBoth((_client, path) => call(gzipClients[path], request(payload(64 * 1024))));
    expect(seen_.fast).toEqual(seen_.connect);
    expect(seen_.fast).toMatchObject({ code: grpc.status.OK });
    expect(seen_.fast.implementation[0]!.headers).toEqual(expect.arrayContaining([['grpc-encoding', 'gzip']]));
  });

  it('connection loss mid-call: the client gets UNAVAILABLE, the implementation\'s signal aborts', async () => {
    behave = (_req, context) =>
      new Promise((_resolve, reject) => context.signal.addEventListener('abort', () => reject(context.signal.reason as Error)));
    const proxies: TcpProxy[] = [];
    try {
      const seen_ = await observeBoth(async (_client, path) => {
        const proxy = await startTcpProxy({ host: '127.0.0.1', port: servers[path].port });
        proxies.push(proxy);
        const client = createGrpcJsClient({ service: WriteSideHandlerService, address: `127.0.0.1:${proxy.port}` });
        try {
          const observed = await call(client, request(), {
            whileOpen: () => void pollUntil(() => seen.length === 1, 5000, 'the call arrived', 5).then(() => proxy.cut()),
          });
          await pollUntil(() => seen[0]?.aborted !== undefined, 5000, 'the implementation saw the loss', 5);
          return observed;
        } finally {
          client.close();
        }
      });
      // grpc-js's words for the loss name nothing of the server
      expect(seen_.fast).toEqual(seen_.connect);
      expect(seen_.fast).toMatchObject({ code: grpc.status.UNAVAILABLE });
      expect(seen_.fast.implementation[0]!.aborted).toBeDefined();
    } finally {
      for (const proxy of proxies) await proxy.close();
    }
  });
});

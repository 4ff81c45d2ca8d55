// The HTTP/2 gRPC transport against hand-written node:http2 servers, for what a well-behaved
// gRPC handler never does: compressed answers, non-gRPC responses, reset streams, GOAWAY, and
// for interceptors and keepalive PINGs.
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { StringValueSchema } from '@bufbuild/protobuf/wkt';
import type { Interceptor } from '@connectrpc/connect';
import { HandlerUnavailableError } from '@chiefofstate/core';
import {
  HandleCommandRequestSchema,
  HandleCommandResponseSchema,
  emptyState,
  packAny,
  type HandleCommandRequest,
} from '@chiefofstate/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { createWriteSideClient, type WriteSideClient } from './write-side-client.js';

interface RawServer {
  readonly port: number;
  readonly sessions: http2.ServerHttp2Session[];
  /** `ping` and `call <command>` in the order the server saw them */
  readonly log: string[];
  stop(): Promise<void>;
}

type Respond = (stream: http2.ServerHttp2Stream, request: HandleCommandRequest, headers: http2.IncomingHttpHeaders) => void;

/** `stall`: calls whose request the server never reads, so their bodies stay in the client's send queue */
async function startRawServer(respond: Respond, stall: (headers: http2.IncomingHttpHeaders) => boolean): Promise<RawServer> {
  const server = http2.createServer();
  const sessions: http2.ServerHttp2Session[] = [];
  const log: string[] = [];
  server.on('session', (session) => {
    sessions.push(session);
    session.on('ping', () => log.push('ping'));
  });
  server.on('stream', (stream, headers) => {
    stream.on('error', () => {}); // a stream the test resets on purpose
    if (stall(headers)) return;
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('end', () => {
      const request = fromBinary(HandleCommandRequestSchema, Buffer.concat(chunks).subarray(5));
      log.push(`call ${textOf(request)}`);
      respond(stream, request, headers);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    sessions,
    log,
    stop: () =>
      new Promise<void>((resolve) => {
        for (const session of sessions) session.destroy();
        server.close(() => resolve());
      }),
  };
}

function envelope(bytes: Uint8Array, compressed = false): Buffer {
  const frame = Buffer.alloc(5 + bytes.byteLength);
  frame[0] = compressed ? 1 : 0;
  frame.writeUInt32BE(bytes.byteLength, 1);
  frame.set(bytes, 5);
  return frame;
}

/** Answers with the command as the single event, like the default test handler. */
function answer(stream: http2.ServerHttp2Stream, request: HandleCommandRequest, compressed = false): void {
  const response = toBinary(HandleCommandResponseSchema, create(HandleCommandResponseSchema, { events: [request.command!] }));
  stream.respond(
    { ':status': 200, 'content-type': 'application/grpc', ...(compressed ? { 'grpc-encoding': 'gzip' } : {}) },
    { waitForTrailers: true },
  );
  stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
  stream.end(envelope(compressed ? gzipSync(response) : response, compressed));
}

function command(text: string): HandleCommandRequest {
  return create(HandleCommandRequestSchema, {
    command: packAny(StringValueSchema, create(StringValueSchema, { value: text })),
    priorState: emptyState(),
  });
}

const servers: RawServer[] = [];
const clients: WriteSideClient[] = [];
async function serve(respond: Respond, stall: (headers: http2.IncomingHttpHeaders) => boolean = () => false): Promise<RawServer> {
  const server = await startRawServer(respond, stall);
  servers.push(server);
  return server;
}
function client(port: number, options: Partial<Parameters<typeof createWriteSideClient>[0]> = {}): WriteSideClient {
  const created = createWriteSideClient({ host: '127.0.0.1', port, timeoutMs: 2000, ...options });
  clients.push(created);
  return created;
}
const textOf = (request: HandleCommandRequest | undefined) =>
  fromBinary(StringValueSchema, request?.command?.value ?? new Uint8Array()).value;

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});

describe('gRPC transport', () => {
  it('sends one binary gRPC request with the call headers, and reads a gzip-compressed answer', async () => {
    let seen: http2.IncomingHttpHeaders = {};
    const server = await serve((stream, request, headers) => {
      seen = headers;
      answer(stream, request, true);
    });
    const response = await client(server.port).handleCommand(command('zipped'), { headers: { 'x-tenant': 'a' }, timeoutMs: 1500 });
    expect(fromBinary(StringValueSchema, response.events[0]!.value).value).toBe('zipped');
    expect(seen[':path']).toBe('/chief_of_state.v1.WriteSideHandlerService/HandleCommand');
    expect(seen['content-type']).toBe('application/grpc+proto');
    expect(seen['te']).toBe('trailers');
    expect(seen['grpc-timeout']).toBe('1500m');
    expect(seen['x-tenant']).toBe('a');
  });

  it('reports a server that does not speak gRPC, or resets the stream, as HandlerUnavailableError', async () => {
    const notGrpc = await serve((stream) => {
      stream.respond({ ':status': 404, 'content-type': 'text/plain' });
      stream.end('no such thing');
    });
    const error = await client(notGrpc.port).handleCommand(command('x')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(HandlerUnavailableError);
    expect((error as Error).message).toContain('HTTP 404');

    const resetting = await serve((stream) => stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR));
    await expect(client(resetting.port).handleCommand(command('x'))).rejects.toBeInstanceOf(HandlerUnavailableError);
  });

  it('opens a new connection for calls after the server sent GOAWAY', async () => {
    const server = await serve((stream, request) => {
      answer(stream, request);
      // after answering the first call, this connection takes no more
      if (textOf(request) === 'first') stream.session?.goaway();
    });
    const c = client(server.port);
    await c.handleCommand(command('first'));
    await new Promise((resolve) => setTimeout(resolve, 50));
    const response = await c.handleCommand(command('second'));
    expect(fromBinary(StringValueSchema, response.events[0]!.value).value).toBe('second');
    expect(server.sessions).toHaveLength(2);
  });

  it('keeps working after many calls were cancelled while their large requests still waited for flow control', async () => {
    // Node never takes the unsent bytes of a cancelled stream off its session's memory count;
    // with the default 10 MB limit, every later answer was refused with ENHANCE_YOUR_CALM.
    const server = await serve((stream, request) => answer(stream, request), (headers) => headers['x-stall'] !== undefined);
    const c = client(server.port);
    const large = command('x'.repeat(256 * 1024));
    const stalled = await Promise.allSettled(
      Array.from({ length: 80 }, () => c.handleCommand(large, { headers: { 'x-stall': '1' }, timeoutMs: 100 })),
    );
    expect(stalled.every((s) => s.status === 'rejected')).toBe(true);
    const response = await c.handleCommand(command('after'));
    expect(fromBinary(StringValueSchema, response.events[0]!.value).value).toBe('after');
  });

  it('moves later calls to a new connection after a stream was refused with ENHANCE_YOUR_CALM', async () => {
    const server = await serve((stream, request) => {
      if (textOf(request) === 'refused') stream.close(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
      else answer(stream, request);
    });
    const c = client(server.port);
    await expect(c.handleCommand(command('refused'))).rejects.toBeInstanceOf(HandlerUnavailableError);
    const response = await c.handleCommand(command('next'));
    expect(fromBinary(StringValueSchema, response.events[0]!.value).value).toBe('next');
    expect(server.sessions).toHaveLength(2);
  });

  it('runs interceptors around each call: they see and add request headers and see the answer', async () => {
    let traceparent: string | string[] | undefined;
    const server = await serve((stream, request, headers) => {
      traceparent = headers['traceparent'];
      answer(stream, request);
    });
    const seen: string[] = [];
    const tracing: Interceptor = (next) => async (request) => {
      request.header.set('traceparent', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
      seen.push(`${request.method.name} ${request.header.get('x-tenant')}`);
      const response = await next(request);
      seen.push(`answered ${response.stream ? 'stream' : response.header.get('content-type')}`);
      return response;
    };
    await client(server.port, { interceptors: [tracing] }).handleCommand(command('x'), { headers: { 'x-tenant': 't' } });
    expect(seen).toEqual(['HandleCommand t', 'answered application/grpc']);
    expect(traceparent).toBe('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
  });

  it('checks a connection idle for longer than the PING interval with a PING before using it', async () => {
    const server = await serve((stream, request) => answer(stream, request));
    const c = client(server.port, { keepalive: { pingIntervalMs: 100 } });
    await c.handleCommand(command('a'));
    await c.handleCommand(command('b'));
    expect(server.log.at(-1)).toBe('call b');
    await new Promise((resolve) => setTimeout(resolve, 150));
    await c.handleCommand(command('c'));
    // the PING went out (and was answered) right before the call
    expect(server.log.slice(-2)).toEqual(['ping', 'call c']);
    expect(server.sessions).toHaveLength(1);
  });
});

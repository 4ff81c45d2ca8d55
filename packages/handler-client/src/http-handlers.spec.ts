// The handler clients over the HTTP handler protocol (protocol: 'http') against plain node:http
// and node:https servers: the routes and JSON of extensions.md section 1, propagated headers,
// statuses as COS errors, deadlines, keep-alive, TLS and mTLS, and the circuit breaker.
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { AnySchema, StringValueSchema, timestampFromMs, type Any } from '@bufbuild/protobuf/wkt';
import {
  CircuitOpenError,
  DeadlineExceededError,
  HandlerFailedError,
  HandlerUnavailableError,
} from '@chiefofstate/core';
import { createCircuitBreaker } from '@chiefofstate/circuit-breaker';
import {
  HandleCommandRequestSchema,
  HandleEventRequestSchema,
  HandleReadSideRequestSchema,
  HeaderSchema,
  MetaDataSchema,
  emptyState,
  packAny,
} from '@chiefofstate/protocol';
import { createTestPki, freePort, timed, type TestPki } from '@chiefofstate/testing';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createReadSideClient } from './read-side-client.js';
import { createWriteSideClient, type WriteSideClient } from './write-side-client.js';

interface Seen {
  path: string;
  headers: IncomingMessage['headers'];
  body: Record<string, unknown>;
  clientCertificate?: string;
}

type Answer = (seen: Seen) => { status?: number; body: unknown; delayMs?: number };

interface TestServer {
  readonly port: number;
  readonly seen: Seen[];
  /** TCP (or TLS) connections accepted */
  readonly connections: number;
  answer: Answer;
  close(): Promise<void>;
}

const pki: TestPki = createTestPki();
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
afterAll(() => pki.remove());

const anyOf = (text: string): Any => packAny(StringValueSchema, create(StringValueSchema, { value: text }));
const b64 = (any: Any) => Buffer.from(toBinary(AnySchema, any)).toString('base64');
const plain = (any: Any | undefined) => (any === undefined ? undefined : { typeUrl: any.typeUrl, value: [...any.value] });
const unb64 = (value: unknown) => plain(fromBinary(AnySchema, Buffer.from(String(value), 'base64')));

async function serve(answer: Answer, tls?: { mtls?: boolean }): Promise<TestServer> {
  const seen: Seen[] = [];
  let connections = 0;
  const handle = (request: IncomingMessage, response: ServerResponse) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const entry: Seen = { path: request.url ?? '', headers: request.headers, body: JSON.parse(Buffer.concat(chunks).toString() || '{}') };
      const peer = (request.socket as TLSSocket).getPeerCertificate?.();
      if (peer?.subject) entry.clientCertificate = String(peer.subject.CN);
      seen.push(entry);
      const { status = 200, body, delayMs = 0 } = state.answer(entry);
      setTimeout(() => {
        const text = typeof body === 'string' ? body : JSON.stringify(body);
        response.writeHead(status, { 'content-type': typeof body === 'string' ? 'text/plain' : 'application/json' }).end(text);
      }, delayMs);
    });
  };
  let server: Server;
  if (tls) {
    const issued = pki.issue({ name: 'http-handler', usage: 'server' });
    server = createHttpsServer(
      { cert: issued.cert, key: issued.key, ...(tls.mtls ? { ca: pki.ca, requestCert: true, rejectUnauthorized: true } : {}) },
      handle,
    );
    server.on('secureConnection', () => connections++);
  } else {
    server = createHttpServer(handle);
    server.on('connection', () => connections++);
  }
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const state: TestServer = {
    port: (server.address() as AddressInfo).port,
    seen,
    get connections() {
      return connections;
    },
    answer,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
  cleanups.push(() => state.close());
  return state;
}

function writeClient(server: { port: number }, options: Partial<Parameters<typeof createWriteSideClient>[0]> = {}): WriteSideClient {
  const client = createWriteSideClient({ host: '127.0.0.1', port: server.port, protocol: 'http', timeoutMs: 3000, ...options });
  cleanups.push(() => client.close());
  return client;
}

/** what a call that must fail threw (undefined when it did not fail) */
const rejectionOf = async (promise: Promise<unknown>): Promise<unknown> => (await timed(() => promise)).error;

const meta = create(MetaDataSchema, {
  entityId: 'account-1',
  revisionNumber: 7,
  revisionDate: timestampFromMs(Date.UTC(2026, 0, 2, 3, 4, 5, 678)),
  data: { audit: anyOf('x') },
  headers: [
    create(HeaderSchema, { key: 'x-user', value: { case: 'stringValue', value: 'ana' } }),
    create(HeaderSchema, { key: 'x-bin', value: { case: 'bytesValue', value: new Uint8Array([1, 2, 255]) } }),
  ],
});

describe('the write handler over HTTP', () => {
  it('POSTs HandleCommand as JSON (Any as base64 of the serialized Any, snake_case meta) with the headers, and reads events', async () => {
    const server = await serve((seen) => ({ body: { events: [seen.body['command'], b64(anyOf('second'))] } }));
    const response = await writeClient(server).handleCommand(
      create(HandleCommandRequestSchema, { command: anyOf('open'), priorState: emptyState(), priorEventMeta: meta }),
      { headers: { 'x-tenant': 'acme', traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' } },
    );
    expect(response.events.map((event) => fromBinary(StringValueSchema, event.value).value)).toEqual(['open', 'second']);
    const [seen] = server.seen;
    expect(seen!.path).toBe('/v1/writeside/handleCommand');
    expect(seen!.headers['content-type']).toBe('application/json');
    expect(seen!.headers['x-tenant']).toBe('acme');
    expect(seen!.headers['traceparent']).toBe('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
    expect(unb64(seen!.body['command'])).toEqual(plain(anyOf('open')));
    expect(unb64(seen!.body['prior_state'])).toEqual(plain(emptyState()));
    expect(seen!.body['prior_event_meta']).toEqual({
      entity_id: 'account-1',
      revision_number: 7,
      revision_date: '2026-01-02T03:04:05.678Z',
      data: { audit: b64(anyOf('x')) },
      headers: [
        { key: 'x-user', string_value: 'ana' },
        { key: 'x-bin', bytes_value: Buffer.from([1, 2, 255]).toString('base64') },
      ],
    });
  });

  it('reads the deprecated single event, an empty answer, and HandleEvent resulting_state (camelCase accepted)', async () => {
    const server = await serve((seen) =>
      seen.path === '/v1/writeside/handleEvent'
        ? { body: seen.body['event_meta'] ? { resultingState: seen.body['event'] } : {} }
        : { body: seen.body['command'] ? { event: seen.body['command'] } : {} },
    );
    const client = writeClient(server);
    const single = await client.handleCommand(create(HandleCommandRequestSchema, { command: anyOf('one') }));
    expect(plain(single.event)).toEqual(plain(anyOf('one')));
    expect(single.events).toEqual([]);
    expect(await client.handleCommand(create(HandleCommandRequestSchema, {}))).toMatchObject({ events: [] });
    const applied = await client.handleEvent(create(HandleEventRequestSchema, { event: anyOf('e'), priorState: emptyState(), eventMeta: meta }));
    expect(plain(applied.resultingState)).toEqual(plain(anyOf('e')));
    expect(server.seen[2]!.body).toMatchObject({ event: b64(anyOf('e')), prior_state: b64(emptyState()) });
  });

  it('turns a non-200 answer into the handler failing with the mapped code and its words', async () => {
    const answers: Array<{ status: number; body: unknown }> = [
      { status: 412, body: { error: 'insufficient funds' } },
      { status: 400, body: 'bad command' },
      { status: 500, body: { code: 'NOT_FOUND', message: 'no such account' } },
      { status: 503, body: '' },
      { status: 418, body: { code: 9 } },
    ];
    const server = await serve(() => answers.shift()!);
    const client = writeClient(server);
    const failures = [];
    for (let i = 0; i < 5; i++) failures.push(await rejectionOf(client.handleCommand(create(HandleCommandRequestSchema, {}))));
    expect(failures.every((failure) => failure instanceof HandlerFailedError)).toBe(true);
    expect(failures.map((failure) => [(failure as HandlerFailedError).statusCode, (failure as HandlerFailedError).statusMessage])).toEqual([
      [9, 'insufficient funds'],
      [3, 'bad command'],
      [5, 'no such account'],
      [14, 'HTTP 503'],
      [9, '{"code":9}'],
    ]);
  });

  it('reports an answer it cannot read as the handler failing with INTERNAL', async () => {
    const server = await serve(() => ({ body: { events: 'not a list' } }));
    const failure = await rejectionOf(writeClient(server).handleCommand(create(HandleCommandRequestSchema, {})));
    expect(failure).toBeInstanceOf(HandlerFailedError);
    expect((failure as HandlerFailedError).statusCode).toBe(13);
    expect((failure as HandlerFailedError).statusMessage).toContain('"events" is not an array');
  });

  it('is unavailable when nothing listens, and out of time after the deadline', async () => {
    const unreachable = await rejectionOf(writeClient({ port: await freePort() }).handleCommand(create(HandleCommandRequestSchema, {})));
    expect(unreachable).toBeInstanceOf(HandlerUnavailableError);
    expect((unreachable as HandlerUnavailableError).publicMessage).toBe('write handler unavailable');
    const server = await serve(() => ({ body: {}, delayMs: 2000 }));
    const started = performance.now();
    const late = await rejectionOf(writeClient(server).handleCommand(create(HandleCommandRequestSchema, {}), { timeoutMs: 200 }));
    expect(late).toBeInstanceOf(DeadlineExceededError);
    expect(performance.now() - started).toBeLessThan(1500);
  });

  it('keeps its connections alive: 50 calls, 10 at a time, on at most 10 connections', async () => {
    const server = await serve(() => ({ body: { events: [] } }));
    const client = writeClient(server);
    for (let round = 0; round < 5; round++) {
      await Promise.all(Array.from({ length: 10 }, () => client.handleCommand(create(HandleCommandRequestSchema, {}))));
    }
    expect(server.seen).toHaveLength(50);
    expect(server.connections).toBeLessThanOrEqual(10);
  });

  it('calls over TLS with a private CA, and presents its client certificate to a handler that asks (mTLS)', async () => {
    const server = await serve(() => ({ body: { events: [] } }), { mtls: true });
    const clientCert = pki.issue({ name: 'cos-client', usage: 'client' });
    const client = writeClient(server, { useTls: true, tls: { ca: pki.ca, cert: clientCert.cert, key: clientCert.key } });
    for (let i = 0; i < 3; i++) await client.handleCommand(create(HandleCommandRequestSchema, {}));
    expect(server.seen.map((seen) => seen.clientCertificate)).toEqual(['cos-client', 'cos-client', 'cos-client']);
    expect(server.connections).toBe(1);
    const untrusted = await rejectionOf(writeClient(server, { useTls: true }).handleCommand(create(HandleCommandRequestSchema, {})));
    expect(untrusted).toBeInstanceOf(HandlerUnavailableError);
  });

  it('behind a circuit breaker: opens after failures in a row, then refuses at once without calling', async () => {
    const server = await serve(() => ({ status: 503, body: { error: 'down' } }));
    const breaker = createCircuitBreaker({ name: 'write handler', maxFailures: 3, callTimeoutMs: 1000, resetTimeoutMs: 60_000 });
    const client = writeClient(server, { breaker });
    for (let i = 0; i < 3; i++) expect(await rejectionOf(client.handleCommand(create(HandleCommandRequestSchema, {})))).toBeInstanceOf(HandlerFailedError);
    expect(await rejectionOf(client.handleCommand(create(HandleCommandRequestSchema, {})))).toBeInstanceOf(CircuitOpenError);
    expect(server.seen).toHaveLength(3);
    // a refusal of the command by the handler is an answer: it does not count
    server.answer = () => ({ status: 412, body: { error: 'no' } });
    const other = createCircuitBreaker({ name: 'write handler', maxFailures: 1, callTimeoutMs: 1000, resetTimeoutMs: 60_000 });
    const refused = writeClient(server, { breaker: other });
    await rejectionOf(refused.handleCommand(create(HandleCommandRequestSchema, {})));
    expect(other.state()).toBe('closed');
  });
});

describe('the read-side handler over HTTP', () => {
  it('POSTs /v1/readside/handle with x-cos-entity-id and x-cos-event-tag, and reads successful', async () => {
    const server = await serve((seen) => ({ body: { successful: seen.body['read_side_id'] === 'orders' } }));
    const client = createReadSideClient({ host: '127.0.0.1', port: server.port, protocol: 'http', timeoutMs: 3000 });
    cleanups.push(() => client.close());
    const request = create(HandleReadSideRequestSchema, { event: anyOf('e'), state: anyOf('s'), meta, readSideId: 'orders' });
    const answer = await client.handleReadSide(request, { headers: { 'x-cos-entity-id': 'account-1', 'x-cos-event-tag': '3' } });
    expect(answer.successful).toBe(true);
    const [seen] = server.seen;
    expect(seen!.path).toBe('/v1/readside/handle');
    expect(seen!.headers['x-cos-entity-id']).toBe('account-1');
    expect(seen!.headers['x-cos-event-tag']).toBe('3');
    expect(seen!.body).toMatchObject({ event: b64(anyOf('e')), state: b64(anyOf('s')), read_side_id: 'orders' });
    expect((seen!.body['meta'] as Record<string, unknown>)['entity_id']).toBe('account-1');
    expect((await client.handleReadSide(create(HandleReadSideRequestSchema, { readSideId: 'other' }))).successful).toBe(false);
  });
});

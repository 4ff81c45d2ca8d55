// A write handler and a read-side handler that speak only HTTP (the newest upstream server's
// HTTP handler protocol: JSON, every Any as the base64 of the serialized Any), on a plain
// node:http server, or node:https with CERT_FILE/KEY_FILE (and CLIENT_CA_FILE: client
// certificates required), as its own process for the end-to-end tests. Prints `listening <port>`.
//
// Write side: commands are Any{type.googleapis.com/cos.test.<Verb>, JSON}: Emit {events}, Fail
// {status, error} (answered with that HTTP status and {"error"}), Slow {ms}. The state is
// Any{cos.test.State, JSON}: the events so far, the revision HandleEvent saw, and the headers
// of both calls. Read side: one JSON line per call on stdout ({r, e, v, h, t, cn}).
// Control: POST /control {"mode": "ok" | "unavailable"} (unavailable: every handler call is
// answered 503), GET /control -> {"commands": <HandleCommand calls so far>}.
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { AnySchema, type Any } from '@bufbuild/protobuf/wkt';

const PREFIX = 'type.googleapis.com/cos.test.';
const SEEN_HEADERS = ['x-tenant', 'traceparent'];

type Json = Record<string, unknown>;

const pack = (typeName: string, value: unknown): string =>
  Buffer.from(toBinary(AnySchema, create(AnySchema, { typeUrl: PREFIX + typeName, value: Buffer.from(JSON.stringify(value)) }))).toString('base64');
const unpack = (base64: unknown): Any => fromBinary(AnySchema, Buffer.from(String(base64 ?? ''), 'base64'));
const parse = (any: Any): Json => JSON.parse(Buffer.from(any.value).toString() || '{}') as Json;

function seenHeaders(request: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of SEEN_HEADERS) {
    const value = request.headers[name];
    if (typeof value === 'string') out[name] = value;
  }
  return out;
}

let mode: 'ok' | 'unavailable' = 'ok';
let commands = 0;

type Answer = { status: number; body: Json } | Promise<{ status: number; body: Json }>;

function handleCommand(body: Json, request: IncomingMessage): Answer {
  commands++;
  const command = unpack(body['command']);
  const args = parse(command);
  const meta = (body['prior_event_meta'] ?? {}) as Json;
  const base = { priorRevision: meta['revision_number'] ?? 0, priorStateType: unpack(body['prior_state']).typeUrl, commandHeaders: seenHeaders(request) };
  switch (command.typeUrl.slice(PREFIX.length)) {
    case 'Emit':
      return { status: 200, body: { events: ((args['events'] as string[] | undefined) ?? ['emitted']).map((name) => pack('Event', { name, ...base })) } };
    case 'Fail':
      return { status: Number(args['status'] ?? 412), body: { error: String(args['error'] ?? 'refused') } };
    case 'Slow':
      return new Promise((resolve) =>
        setTimeout(() => resolve({ status: 200, body: { events: [pack('Event', { name: 'slow', ...base })] } }), Number(args['ms'] ?? 1000)),
      );
    default:
      return { status: 400, body: { error: `unknown command ${command.typeUrl}` } };
  }
}

function handleEvent(body: Json, request: IncomingMessage): Answer {
  const event = parse(unpack(body['event']));
  const prior = unpack(body['prior_state']);
  const priorState = prior.typeUrl === PREFIX + 'State' ? parse(prior) : {};
  const meta = (body['event_meta'] ?? {}) as Json;
  const state = {
    events: [...((priorState['events'] as string[] | undefined) ?? []), event['name']],
    priorRevision: event['priorRevision'],
    priorStateType: event['priorStateType'],
    eventRevision: meta['revision_number'],
    eventEntityId: meta['entity_id'],
    revisionDate: meta['revision_date'],
    headers: { command: event['commandHeaders'], event: seenHeaders(request) },
  };
  return { status: 200, body: { resulting_state: pack('State', state) } };
}

function handleReadSide(body: Json, request: IncomingMessage): Answer {
  const meta = (body['meta'] ?? {}) as Json;
  const peer = (request.socket as Partial<TLSSocket>).getPeerCertificate?.();
  const line = {
    r: body['read_side_id'],
    e: meta['entity_id'],
    v: meta['revision_number'],
    ev: parse(unpack(body['event']))['name'],
    h: request.headers['x-cos-entity-id'] ?? null,
    t: request.headers['x-cos-event-tag'] ?? null,
    cn: peer?.subject?.CN ?? null,
  };
  process.stdout.write(`${JSON.stringify(line)}\n`);
  return { status: 200, body: { successful: true } };
}

const ROUTES: Record<string, (body: Json, request: IncomingMessage) => Answer> = {
  '/v1/writeside/handleCommand': handleCommand,
  '/v1/writeside/handleEvent': handleEvent,
  '/v1/readside/handle': handleReadSide,
};

function serve(request: IncomingMessage, response: ServerResponse): void {
  const chunks: Buffer[] = [];
  request.on('data', (chunk: Buffer) => chunks.push(chunk));
  request.on('end', () => {
    const reply = (status: number, body: Json) => {
      const text = JSON.stringify(body);
      response.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
    };
    const text = Buffer.concat(chunks).toString();
    const body = (text === '' ? {} : JSON.parse(text)) as Json;
    if (request.url === '/control') {
      if (request.method === 'POST') mode = body['mode'] === 'unavailable' ? 'unavailable' : 'ok';
      reply(200, { mode, commands });
      return;
    }
    const route = request.method === 'POST' ? ROUTES[request.url ?? ''] : undefined;
    if (route === undefined) return reply(404, { error: `no route ${request.method} ${request.url}` });
    if (mode === 'unavailable') {
      if (route === handleCommand) commands++;
      return reply(503, { error: 'the handler is down for maintenance' });
    }
    void Promise.resolve(route(body, request)).then(({ status, body: answer }) => reply(status, answer));
  });
}

const certFile = process.env['CERT_FILE'];
const clientCa = process.env['CLIENT_CA_FILE'];
const server = certFile
  ? createHttpsServer(
      {
        cert: readFileSync(certFile),
        key: readFileSync(process.env['KEY_FILE']!),
        ...(clientCa ? { ca: readFileSync(clientCa), requestCert: true, rejectUnauthorized: true } : {}),
      },
      serve,
    )
  : createHttpServer(serve);
server.listen(Number(process.env['PORT'] ?? 0), '127.0.0.1', () => {
  const address = server.address();
  process.stdout.write(`listening ${typeof address === 'object' && address ? address.port : 0}\n`);
});
process.once('SIGTERM', () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
});

// HTTP clients of the JSON surfaces, as a user without gRPC stubs has them: node's fetch (HTTP/1.1),
// node:http2 with prior knowledge (`curl --http2-prior-knowledge`), and a client written to the
// upstream HTTP front end's shape only (base64 Anys, snake_case), on node:http.
import { execFileSync } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { connect, type ClientHttp2Session, type SecureClientSessionOptions } from 'node:http2';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { fromBinary, toBinary } from '@bufbuild/protobuf';
import { AnySchema, type Any } from '@bufbuild/protobuf/wkt';
import { startProcess, type RunningProcess } from '@chiefofstate/testing';
import { APP_ROOT } from './processes.js';

export interface JsonReply {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly json: Record<string, unknown>;
}

export interface RequestInit {
  readonly method?: string;
  readonly body?: unknown;
  readonly headers?: Record<string, string>;
}

/** One request on an HTTP/2 session (h2c prior knowledge, or h2 over TLS). */
export async function h2Json(session: ClientHttp2Session, path: string, init: RequestInit = {}): Promise<JsonReply> {
  const stream = session.request({
    ':method': init.method ?? (init.body === undefined ? 'GET' : 'POST'),
    ':path': path,
    ...(init.body === undefined ? {} : { 'content-type': 'application/json' }),
    ...init.headers,
  });
  stream.end(init.body === undefined ? undefined : JSON.stringify(init.body));
  const [headers, body] = await Promise.all([
    new Promise<Record<string, string | string[] | undefined>>((resolve, reject) => {
      stream.once('response', (received) => resolve(received as Record<string, string | string[] | undefined>));
      stream.once('error', reject);
    }),
    (async () => {
      const parts: Buffer[] = [];
      for await (const chunk of stream) parts.push(chunk as Buffer);
      return Buffer.concat(parts).toString('utf8');
    })(),
  ]);
  return { status: Number(headers[':status']), headers, json: JSON.parse(body) as Record<string, unknown> };
}

/** An HTTP/2 session to `origin`, without the TLS upgrade dance: prior knowledge, or ALPN h2. */
export function h2Session(origin: string, tls?: SecureClientSessionOptions): ClientHttp2Session {
  const session = connect(origin, tls);
  session.on('error', () => {});
  return session;
}

/** One HTTP/1.1 request with node:http(s) (for TLS with a test CA, which fetch cannot take). */
export function http1Json(url: string, init: RequestInit & { ca?: string; cert?: string; key?: string } = {}): Promise<JsonReply> {
  const target = new URL(url);
  const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
  const body = init.body === undefined ? undefined : Buffer.from(JSON.stringify(init.body));
  return new Promise((resolve, reject) => {
    const request = send(
      target,
      {
        method: init.method ?? (body === undefined ? 'GET' : 'POST'),
        headers: { ...(body === undefined ? {} : { 'content-type': 'application/json', 'content-length': String(body.byteLength) }), ...init.headers },
        ...(init.ca ? { ca: init.ca } : {}),
        ...(init.cert ? { cert: init.cert, key: init.key } : {}),
        agent: false,
      },
      (response) => {
        const parts: Buffer[] = [];
        response.on('data', (chunk: Buffer) => parts.push(chunk));
        response.on('end', () =>
          resolve({
            status: response.statusCode ?? 0,
            headers: response.headers,
            json: JSON.parse(Buffer.concat(parts).toString('utf8') || '{}') as Record<string, unknown>,
          }),
        );
        response.on('error', reject);
      },
    );
    request.on('error', reject);
    request.end(body);
  });
}

/** What the upstream server's HTTP front end answers: `state` and `meta`, every Any as base64. */
export interface UpstreamStateReply {
  readonly state: Any;
  readonly meta: {
    readonly entity_id: string;
    readonly revision_number: number;
    readonly revision_date?: string;
    readonly data: Record<string, string>;
    readonly headers: Array<{ key: string; string_value?: string; bytes_value?: string }>;
  };
}

/**
 * A client written from the upstream front end's description alone: POST
 * /v1/commands/{id}/process with `{"command": <base64 Any>}`, GET /v1/entities/{id}/state, over
 * HTTP/1.1; anything but 200 is a failure carrying the body.
 */
export function upstreamHttpClient(baseUrl: string, headers: Record<string, string> = {}) {
  const decode = (reply: JsonReply): UpstreamStateReply => {
    if (reply.status !== 200) throw Object.assign(new Error(`HTTP ${reply.status}: ${JSON.stringify(reply.json)}`), { reply });
    return {
      state: fromBinary(AnySchema, Buffer.from(reply.json['state'] as string, 'base64')),
      meta: reply.json['meta'] as UpstreamStateReply['meta'],
    };
  };
  return {
    async processCommand(entityId: string, command: Any, extraHeaders: Record<string, string> = {}): Promise<UpstreamStateReply> {
      const reply = await http1Json(`${baseUrl}/v1/commands/${encodeURIComponent(entityId)}/process`, {
        body: { entity_id: entityId, command: Buffer.from(toBinary(AnySchema, command)).toString('base64') },
        headers: { ...headers, ...extraHeaders },
      });
      return decode(reply);
    },
    async getState(entityId: string): Promise<UpstreamStateReply> {
      return decode(await http1Json(`${baseUrl}/v1/entities/${encodeURIComponent(entityId)}/state`, { headers }));
    },
  };
}

/** The base64 of a serialized Any, as the upstream shape carries it. */
export function base64Any(any: Any): string {
  return Buffer.from(toBinary(AnySchema, any)).toString('base64');
}

/** `buf build` of the sample bank's protos, as a user would make COS_PROTO_DESCRIPTOR_SET's file. */
export function buildBankDescriptorSet(dir: string): string {
  const repo = join(APP_ROOT, '../..');
  const out = join(dir, 'bank.binpb');
  execFileSync(join(repo, 'node_modules/.bin/buf'), ['build', 'examples/proto', '--path', 'examples/proto/bank/v1/bank.proto', '-o', out], {
    cwd: repo,
  });
  return out;
}

/** The sample bank write handler (bank.v1 types), as its own process. */
export async function startBankHandler(): Promise<RunningProcess & { port: number }> {
  const child = startProcess(
    process.execPath,
    ['--import', 'tsx', join(APP_ROOT, '../sample-bank/src/main.ts')],
    { PORT: '0', HOST: '127.0.0.1', NODE_OPTIONS: '--conditions=@chiefofstate/source' },
    { cwd: APP_ROOT },
  );
  const match = await child.waitFor(/"port":(\d+)[^\n]*bank write handler listening/);
  return Object.assign(child, { port: Number(match[1]) });
}

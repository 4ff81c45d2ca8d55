import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { connect, type ClientHttp2Session } from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create, toBinary } from '@bufbuild/protobuf';
import { base64Encode } from '@bufbuild/protobuf/wire';
import {
  AnySchema,
  FileDescriptorSetSchema,
  FieldDescriptorProto_Label,
  FieldDescriptorProto_Type,
  type Any,
} from '@bufbuild/protobuf/wkt';
import { NotFoundError, RevisionMismatchError } from '@chiefofstate/core';
import { ChiefOfStateService, MetaDataSchema, createTypeRegistry } from '@chiefofstate/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createChiefOfStateService, type CommandProcessor } from './chief-of-state-service.js';
import { startGrpcServer, type GrpcServer } from './grpc-server.js';
import { startHttpFrontEnd, type HttpFrontEnd } from './http-front-end.js';
import { httpOpenApiDocument } from './openapi.js';

// a user's type, as COS_PROTO_DESCRIPTOR_SET would bring it
const registry = createTypeRegistry([
  {
    name: 'shop.binpb',
    bytes: toBinary(
      FileDescriptorSetSchema,
      create(FileDescriptorSetSchema, {
        file: [
          {
            name: 'shop/v1/cart.proto',
            package: 'shop.v1',
            syntax: 'proto3',
            messageType: [
              {
                name: 'Cart',
                field: [
                  { name: 'item_count', number: 1, type: FieldDescriptorProto_Type.INT32, label: FieldDescriptorProto_Label.OPTIONAL, jsonName: 'itemCount' },
                ],
              },
            ],
          },
        ],
      }),
    ),
  },
]);
const Cart = registry.getMessage('shop.v1.Cart')!;
const cart = (itemCount: number): Any =>
  create(AnySchema, { typeUrl: 'type.googleapis.com/shop.v1.Cart', value: toBinary(Cart, create(Cart, { itemCount })) });
const base64Of = (any: Any) => base64Encode(toBinary(AnySchema, any));

type Seen = Parameters<CommandProcessor['processCommand']>[0];
const seen: Seen[] = [];
const processor: CommandProcessor = {
  async processCommand(request) {
    seen.push(request);
    if (request.expectedRevision === 7n) throw new RevisionMismatchError(7n, 2n);
    return { state: request.command ?? create(AnySchema), meta: create(MetaDataSchema, { entityId: request.entityId, revisionNumber: 1, headers: request.persistedHeaders ?? [] }) };
  },
  async getState(entityId) {
    if (entityId === 'missing') throw new NotFoundError(`entity ${entityId} not found`);
    return { state: cart(3), meta: create(MetaDataSchema, { entityId, revisionNumber: 3 }) };
  },
};
const service = () =>
  createChiefOfStateService({ processor, headers: { propagated: ['x-tenant'], persisted: ['x-user'] }, commandTimeoutMs: 5000 });

const tokens = join(mkdtempSync(join(tmpdir(), 'cos-json-')), 'tokens');
writeFileSync(tokens, 'http-token-0123456789\n');
const AUTH = { authorization: 'Bearer http-token-0123456789' };

/** One request over h2c prior knowledge, as `curl --http2-prior-knowledge` sends it. */
async function h2(session: ClientHttp2Session, path: string, init: { method?: string; body?: string; headers?: Record<string, string> } = {}) {
  const stream = session.request({ ':method': init.method ?? 'GET', ':path': path, ...init.headers });
  if (init.body !== undefined) stream.end(init.body);
  else stream.end();
  const [status, chunks] = await Promise.all([
    new Promise<number>((resolve) => stream.once('response', (headers) => resolve(Number(headers[':status'])))),
    (async () => {
      const parts: Buffer[] = [];
      for await (const chunk of stream) parts.push(chunk as Buffer);
      return Buffer.concat(parts).toString();
    })(),
  ]);
  return { status, json: JSON.parse(chunks) as Record<string, unknown> };
}

describe('Connect JSON on the gRPC port', () => {
  let withTypes: GrpcServer;
  let bare: GrpcServer;
  beforeAll(async () => {
    const routes = (router: Parameters<Parameters<typeof startGrpcServer>[0]['routes']>[0]) => void router.service(ChiefOfStateService, service());
    withTypes = await startGrpcServer({ host: '127.0.0.1', port: 0, maxMessageBytes: 65_536, routes, registry, corsAllowedOrigins: ['http://page.test'] });
    bare = await startGrpcServer({ host: '127.0.0.1', port: 0, maxMessageBytes: 65_536, routes });
  });
  afterAll(async () => {
    await Promise.all([withTypes.close(100), bare.close(100)]);
  });
  const post = (server: GrpcServer, method: string, body: unknown, headers: Record<string, string> = {}) =>
    fetch(`http://127.0.0.1:${server.port}/chief_of_state.v1.ChiefOfStateService/${method}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
    });

  it('answers GetState over HTTP/1.1: known types as @type JSON, unknown ones as base64 of the Any', async () => {
    const known = await post(withTypes, 'GetState', { entityId: 'c-1' });
    expect(known.status).toBe(200);
    expect(await known.json()).toEqual({
      state: { '@type': 'type.googleapis.com/shop.v1.Cart', itemCount: 3 },
      meta: { entityId: 'c-1', revisionNumber: 3 },
    });
    const unknown = await post(bare, 'GetState', { entityId: 'c-1' });
    expect(unknown.status).toBe(200);
    expect(await unknown.json()).toMatchObject({ state: base64Of(cart(3)) });
  });

  it('takes a command as @type JSON or base64, over HTTP/2 prior knowledge too, and answers errors with their HTTP status', async () => {
    const session = connect(`http://127.0.0.1:${withTypes.port}`);
    try {
      const path = '/chief_of_state.v1.ChiefOfStateService/ProcessCommand';
      const headers = { 'content-type': 'application/json' };
      const asJson = await h2(session, path, {
        method: 'POST',
        headers: { ...headers, 'x-user': 'ann' },
        body: JSON.stringify({ entityId: 'c-2', command: { '@type': 'type.googleapis.com/shop.v1.Cart', itemCount: 5 } }),
      });
      expect(asJson).toEqual({
        status: 200,
        json: { state: { '@type': 'type.googleapis.com/shop.v1.Cart', itemCount: 5 }, meta: { entityId: 'c-2', revisionNumber: 1, headers: [{ key: 'x-user', stringValue: 'ann' }] } },
      });
      const asBase64 = await h2(session, path, { method: 'POST', headers, body: JSON.stringify({ entityId: 'c-2', command: base64Of(cart(6)) }) });
      expect(asBase64.json['state']).toEqual({ '@type': 'type.googleapis.com/shop.v1.Cart', itemCount: 6 });
      const notFound = await h2(session, '/chief_of_state.v1.ChiefOfStateService/GetState', { method: 'POST', headers, body: '{"entityId":"missing"}' });
      expect(notFound).toEqual({ status: 404, json: { code: 'not_found', message: 'entity missing not found' } });
    } finally {
      session.close();
    }
    const unknownType = await post(bare, 'ProcessCommand', { entityId: 'c-3', command: { '@type': 'type.googleapis.com/shop.v1.Cart' } });
    expect(unknownType.status).toBe(400);
    expect(await unknownType.json()).toMatchObject({ code: 'invalid_argument', message: expect.stringContaining('COS_PROTO_DESCRIPTOR_SET') });
    const notJson = await fetch(`http://127.0.0.1:${bare.port}/chief_of_state.v1.ChiefOfStateService/GetState`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{',
    });
    expect(notJson.status).toBe(400);
  });

  it('answers CORS preflights from an allowed origin only, and marks its responses', async () => {
    const url = `http://127.0.0.1:${withTypes.port}/chief_of_state.v1.ChiefOfStateService/GetState`;
    const preflight = await fetch(url, {
      method: 'OPTIONS',
      headers: { origin: 'http://page.test', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type,x-tenant' },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe('http://page.test');
    expect(preflight.headers.get('access-control-allow-headers')).toBe('content-type,x-tenant');
    const actual = await post(withTypes, 'GetState', { entityId: 'c-1' }, { origin: 'http://page.test' });
    expect(actual.headers.get('access-control-allow-origin')).toBe('http://page.test');
    const other = await post(withTypes, 'GetState', { entityId: 'c-1' }, { origin: 'http://evil.test' });
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
    const off = await post(bare, 'GetState', { entityId: 'c-1' }, { origin: 'http://page.test' });
    expect(off.headers.get('access-control-allow-origin')).toBeNull();
  });
});

describe('the HTTP/JSON front end', () => {
  let front: HttpFrontEnd;
  let base: string;
  beforeAll(async () => {
    front = await startHttpFrontEnd({
      host: '127.0.0.1',
      port: 0,
      service: service(),
      registry,
      maxMessageBytes: 65_536,
      callerAuth: { api: { tokensFile: tokens }, forwardingChecked: false },
    });
    base = `http://127.0.0.1:${front.port}`;
  });
  afterAll(() => front.close(100));

  it('processes a command in the upstream shape, the path id winning, every header offered to the rules', async () => {
    seen.length = 0;
    const response = await fetch(`${base}/v1/commands/c%2F9/process`, {
      method: 'POST',
      headers: { ...AUTH, 'content-type': 'application/json', 'x-tenant': 't-1', 'x-user': 'bea' },
      body: JSON.stringify({ entity_id: 'ignored', command: base64Of(cart(2)) }),
    });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({
      state: base64Of(cart(2)),
      meta: { entity_id: 'c/9', revision_number: 1, data: {}, headers: [{ key: 'x-user', string_value: 'bea' }] },
    });
    expect(seen[0]).toMatchObject({ entityId: 'c/9', propagatedHeaders: { 'x-tenant': 't-1' } });
  });

  it('renders known types as JSON on request, over HTTP/2 too', async () => {
    const session = connect(base);
    try {
      expect(await h2(session, '/v1/entities/c-1/state?any=json', { headers: AUTH })).toEqual({
        status: 200,
        json: { state: { '@type': 'type.googleapis.com/shop.v1.Cart', item_count: 3 }, meta: { entity_id: 'c-1', revision_number: 3, data: {}, headers: [] } },
      });
    } finally {
      session.close();
    }
  });

  it('answers each failure with the HTTP status of its code, and code, message and details in the body', async () => {
    const missing = await fetch(`${base}/v1/entities/missing/state`, { headers: AUTH });
    expect(missing.status).toBe(404);
    expect(await missing.json()).toEqual({ code: 5, status: 'NOT_FOUND', message: 'entity missing not found', details: [], error: 'entity missing not found' });
    const mismatch = await fetch(`${base}/v1/commands/c-4/process`, {
      method: 'POST',
      headers: { ...AUTH, 'x-cos-expected-revision': '7' },
      body: JSON.stringify({ command: base64Of(cart(1)) }),
    });
    expect(mismatch.status).toBe(412);
    expect(await mismatch.json()).toMatchObject({
      code: 9,
      status: 'FAILED_PRECONDITION',
      details: [{ '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: 'REVISION_MISMATCH', metadata: { expected: '7', actual: '2' } }],
    });
    const badBody = await fetch(`${base}/v1/commands/c-4/process`, { method: 'POST', headers: AUTH, body: '{"command": 12}' });
    expect(badBody.status).toBe(400);
    expect(await badBody.json()).toMatchObject({ code: 3, status: 'INVALID_ARGUMENT' });
    const noToken = await fetch(`${base}/v1/entities/c-1/state`);
    expect(noToken.status).toBe(401);
    expect(await noToken.json()).toMatchObject({ code: 16, status: 'UNAUTHENTICATED' });
    expect((await fetch(`${base}/v1/entities/c-1/state`, { method: 'POST', headers: AUTH })).status).toBe(405);
    expect((await fetch(`${base}/v2/else`, { headers: AUTH })).status).toBe(404);
    const any = await fetch(`${base}/v1/entities/c-1/state`, { headers: AUTH });
    expect(await any.json()).toMatchObject({ state: base64Of(cart(3)) });
  });

  it('serves its OpenAPI document, the one committed in docs/', async () => {
    const response = await fetch(`${base}/openapi.json`);
    expect(response.status).toBe(200);
    const served = await response.json();
    expect(served).toEqual(httpOpenApiDocument());
    // on failure: npx tsx tools/scripts/openapi.ts (see docs/http-json.md)
    const committed = JSON.parse(readFileSync(new URL('../../../docs/openapi.json', import.meta.url), 'utf8')) as unknown;
    expect(committed).toEqual(served);
  });
});

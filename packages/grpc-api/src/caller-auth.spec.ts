import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { create } from '@bufbuild/protobuf';
import { AnySchema } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from '@connectrpc/connect-node';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseTokens } from '@chiefofstate/tls';
import {
  ChiefOfStateService,
  FORWARDED_BY_HEADER,
  Health,
  HealthCheckRequestSchema,
  MetaDataSchema,
  ProcessCommandRequestSchema,
  ReadSideManagerService,
} from '@chiefofstate/protocol';
import { createGrpcJsClient, createTestPki, pollUntil } from '@chiefofstate/testing';
import { decideCall, type AccessRules, type CallRefusal } from './caller-auth.js';
import { createChiefOfStateService } from './chief-of-state-service.js';
import { startGrpcServer, type GrpcServer } from './grpc-server.js';
import { createHealthStatus } from './health-service.js';
import { createReadSideManagerService } from './read-side-manager-service.js';

const API = ChiefOfStateService.typeName;
const ADMIN = ReadSideManagerService.typeName;
const API_TOKEN = 'api-token-0123456789';
const ADMIN_TOKEN = 'admin-token-0123456789';

describe('decideCall', () => {
  const rules = (overrides: Partial<AccessRules> = {}): AccessRules => ({
    services: new Map([
      [API, { tokens: () => parseTokens(API_TOKEN), clientNames: new Set(['app']) }],
      [ADMIN, { tokens: () => parseTokens(ADMIN_TOKEN), clientNames: new Set(['operator']) }],
    ]),
    forwardingService: API,
    forwardingChecked: true,
    peerNames: new Set(),
    ...overrides,
  });
  const call = (service: string, fields: { token?: string; authorization?: string; identities?: string[]; forwarded?: boolean } = {}) => ({
    service,
    authorization: fields.authorization ?? (fields.token === undefined ? null : `Bearer ${fields.token}`),
    forwarded: fields.forwarded ?? false,
    identities: fields.identities ?? [],
  });
  const code = (verdict: ReturnType<typeof decideCall>) => (verdict.ok ? 'ok' : verdict.code);

  it('lets each service in with its own token or client name, and leaves other services open', () => {
    expect(code(decideCall(rules(), call(API, { token: API_TOKEN })))).toBe('ok');
    expect(code(decideCall(rules(), call(ADMIN, { token: ADMIN_TOKEN })))).toBe('ok');
    expect(code(decideCall(rules(), call(API, { identities: ['other', 'app'] })))).toBe('ok');
    expect(code(decideCall(rules(), call(ADMIN, { identities: ['operator'] })))).toBe('ok');
    expect(code(decideCall(rules(), call(Health.typeName)))).toBe('ok');
  });

  it('says UNAUTHENTICATED without a credential, for an unknown token or another scheme', () => {
    expect(decideCall(rules(), call(API))).toEqual({ ok: false, code: 'unauthenticated', reason: 'no credential' });
    expect(decideCall(rules(), call(ADMIN, { token: 'unknown-token-0123456789' }))).toEqual({
      ok: false,
      code: 'unauthenticated',
      reason: 'unknown bearer token',
    });
    expect(code(decideCall(rules(), call(API, { authorization: `Basic ${API_TOKEN}` })))).toBe('unauthenticated');
  });

  it('says PERMISSION_DENIED for a valid credential of the wrong service, or a certificate not listed', () => {
    expect(decideCall(rules(), call(ADMIN, { token: API_TOKEN }))).toMatchObject({ code: 'permission_denied' });
    expect(decideCall(rules(), call(API, { token: ADMIN_TOKEN }))).toMatchObject({ code: 'permission_denied' });
    expect(decideCall(rules(), call(ADMIN, { identities: ['app'] }))).toMatchObject({ code: 'permission_denied' });
    expect(decideCall(rules(), call(API, { identities: ['stranger'] }))).toMatchObject({ code: 'permission_denied' });
  });

  it('refuses everyone on a service configured without any credential', () => {
    const locked = rules({
      services: new Map([
        [API, { tokens: () => parseTokens(API_TOKEN), clientNames: new Set<string>() }],
        [ADMIN, { tokens: () => undefined, clientNames: new Set<string>() }],
      ]),
    });
    expect(decideCall(locked, call(ADMIN))).toMatchObject({ code: 'permission_denied' });
    expect(decideCall(locked, call(ADMIN, { token: API_TOKEN }))).toMatchObject({ code: 'permission_denied' });
  });

  it('lets forwarded calls past the caller check only where a router checks their proof', () => {
    expect(code(decideCall(rules(), call(API, { forwarded: true })))).toBe('ok');
    // the mark means nothing on the admin service, nor without a router
    expect(code(decideCall(rules(), call(ADMIN, { forwarded: true })))).toBe('unauthenticated');
    expect(code(decideCall(rules({ forwardingChecked: false }), call(API, { forwarded: true })))).toBe('unauthenticated');
  });

  it('with peer names, wants a verified peer certificate with one of them on forwarded calls', () => {
    const peers = rules({ peerNames: new Set(['cos-replica']) });
    expect(decideCall(peers, call(API, { forwarded: true }))).toMatchObject({ code: 'unauthenticated' });
    expect(decideCall(peers, call(API, { forwarded: true, identities: ['app'] }))).toMatchObject({ code: 'unauthenticated' });
    expect(code(decideCall(peers, call(API, { forwarded: true, identities: ['cos-replica'] })))).toBe('ok');
    // also when the API itself is open
    const openApi = rules({ peerNames: new Set(['cos-replica']), services: new Map() });
    expect(code(decideCall(openApi, call(API, { forwarded: true })))).toBe('unauthenticated');
    expect(code(decideCall(openApi, call(API)))).toBe('ok');
  });
});

describe('caller authentication over TLS, on the unary path and the Connect adapter', () => {
  const pki = createTestPki();
  const serverCert = pki.issue({ name: 'cos-server' });
  const app = pki.issue({ name: 'app', usage: 'client' });
  const operator = pki.issue({ name: 'operator', usage: 'client' });
  const tokensFile = join(pki.dir, 'api-tokens');
  const refusals: CallRefusal[] = [];
  let server: GrpcServer;
  let address: string;

  beforeAll(async () => {
    writeFileSync(tokensFile, `${API_TOKEN}\n`);
    server = await startGrpcServer({
      host: '127.0.0.1',
      port: 0,
      maxMessageBytes: 64 * 1024,
      tls: { certFile: serverCert.certFile, keyFile: serverCert.keyFile, clientCaFile: pki.caFile, clientAuth: 'optional', reloadIntervalMs: 0 },
      callerAuth: {
        api: { tokensFile, clientNames: ['app'] },
        admin: { clientNames: ['operator'] },
        forwardingChecked: false,
        reloadIntervalMs: 50,
        onRefused: (refusal) => refusals.push(refusal),
      },
      routes: (router) => {
        router.service(
          ChiefOfStateService,
          createChiefOfStateService({
            processor: {
              processCommand: async (request) => ({ state: create(AnySchema), meta: create(MetaDataSchema, { entityId: request.entityId }) }),
              getState: async (entityId) => ({ state: create(AnySchema), meta: create(MetaDataSchema, { entityId }) }),
            },
            headers: { propagated: [], persisted: [] },
            commandTimeoutMs: 5000,
          }),
        );
        router.service(
          ReadSideManagerService,
          createReadSideManagerService({
            manager: {
              latestOffsets: async () => [],
              latestOffset: async (_id, shard) => ({ shard, position: 0n }),
              restart: async () => undefined,
              pause: async () => undefined,
              resume: async () => undefined,
              skip: async () => true,
            },
          }),
        );
        router.service(Health, createHealthStatus({ services: [] }).service);
      },
    });
    address = `localhost:${server.port}`;
  });
  afterAll(async () => {
    await server.close(0);
    pki.remove();
  });

  const grpcJs = (service: typeof ChiefOfStateService | typeof ReadSideManagerService | typeof Health, cert?: { cert: string; key: string }) =>
    createGrpcJsClient({
      service,
      address,
      credentials: grpc.credentials.createSsl(Buffer.from(pki.ca), cert ? Buffer.from(cert.key) : null, cert ? Buffer.from(cert.cert) : null),
    });
  const bearer = (token: string) => {
    const metadata = new grpc.Metadata();
    metadata.set('authorization', `Bearer ${token}`);
    return metadata;
  };
  const codeOf = async (promise: Promise<unknown>) => promise.then(() => grpc.status.OK, (error: grpc.ServiceError) => error.code);
  const processCommand = ChiefOfStateService.method.processCommand;
  const latestOffsets = ReadSideManagerService.method.getLatestOffset;

  it('on the unary gRPC path: token, client certificate, refusals by kind', async () => {
    const anonymous = grpcJs(ChiefOfStateService);
    const request = create(ProcessCommandRequestSchema, { entityId: 'e1' });
    expect(await codeOf(anonymous.unary(processCommand, request))).toBe(grpc.status.UNAUTHENTICATED);
    expect(await codeOf(anonymous.unary(processCommand, request, { metadata: bearer('wrong-token-0123456789') }))).toBe(
      grpc.status.UNAUTHENTICATED,
    );
    expect(await codeOf(anonymous.unary(processCommand, request, { metadata: bearer(API_TOKEN) }))).toBe(grpc.status.OK);
    // the forwarding mark opens nothing when no router checks its proof
    const marked = bearer('x'.repeat(20));
    marked.set(FORWARDED_BY_HEADER, '10.0.0.1:9000');
    expect(await codeOf(anonymous.unary(processCommand, request, { metadata: marked }))).toBe(grpc.status.UNAUTHENTICATED);
    anonymous.close();

    const appClient = grpcJs(ChiefOfStateService, app);
    expect(await codeOf(appClient.unary(processCommand, request))).toBe(grpc.status.OK);
    appClient.close();
    const operatorOnApi = grpcJs(ChiefOfStateService, operator);
    expect(await codeOf(operatorOnApi.unary(processCommand, request))).toBe(grpc.status.PERMISSION_DENIED);
    operatorOnApi.close();

    const apiTokenOnAdmin = grpcJs(ReadSideManagerService);
    const offsets = create(latestOffsets.input, { readSideId: 'r' });
    expect(await codeOf(apiTokenOnAdmin.unary(latestOffsets, offsets))).toBe(grpc.status.UNAUTHENTICATED);
    expect(await codeOf(apiTokenOnAdmin.unary(latestOffsets, offsets, { metadata: bearer(API_TOKEN) }))).toBe(grpc.status.PERMISSION_DENIED);
    apiTokenOnAdmin.close();
    const admin = grpcJs(ReadSideManagerService, operator);
    expect(await codeOf(admin.unary(latestOffsets, offsets))).toBe(grpc.status.OK);
    admin.close();

    const health = grpcJs(Health);
    expect(await codeOf(health.unary(Health.method.check, create(HealthCheckRequestSchema)))).toBe(grpc.status.OK);
    health.close();

    expect(refusals.length).toBeGreaterThanOrEqual(5);
    expect(refusals[0]).toMatchObject({ method: `/${API}/ProcessCommand`, code: 'unauthenticated', reason: 'no credential' });
    expect(refusals[0]!.remoteAddress).toMatch(/127\.0\.0\.1/);
    expect(JSON.stringify(refusals)).not.toContain('wrong-token');
  });

  it('on the Connect adapter (gRPC-Web, Connect, the streaming gRPC client of Connect) the same, with the certificate seen', async () => {
    const baseUrl = `https://localhost:${server.port}`;
    const nodeOptions = (cert?: { cert: string; key: string }) => ({ ca: pki.ca, ...(cert ? { cert: cert.cert, key: cert.key } : {}) });
    const failure = async (promise: Promise<unknown>) =>
      promise.then(
        () => Code[0],
        (error: unknown) => Code[ConnectError.from(error).code],
      );
    for (const make of [createConnectTransport, createGrpcWebTransport]) {
      const anonymous = createClient(ChiefOfStateService, make({ baseUrl, httpVersion: '2', nodeOptions: nodeOptions() }));
      expect(await failure(anonymous.processCommand({ entityId: 'e' }))).toBe('Unauthenticated');
      expect(await failure(anonymous.processCommand({ entityId: 'e' }, { headers: { authorization: `Bearer ${API_TOKEN}` } }))).toBe(Code[0]);
      const withCert = createClient(ReadSideManagerService, make({ baseUrl, httpVersion: '2', nodeOptions: nodeOptions(app) }));
      expect(await failure(withCert.getLatestOffset({ readSideId: 'r' }))).toBe('PermissionDenied');
      const admin = createClient(ReadSideManagerService, make({ baseUrl, httpVersion: '2', nodeOptions: nodeOptions(operator) }));
      expect(await failure(admin.getLatestOffset({ readSideId: 'r' }))).toBe(Code[0]);
    }
    // Connect's own gRPC client streams its request: the adapter, not the unary path, serves it
    const grpcOnAdapter = createClient(ChiefOfStateService, createGrpcTransport({ baseUrl, nodeOptions: nodeOptions(app) }));
    expect(await failure(grpcOnAdapter.processCommand({ entityId: 'e' }))).toBe(Code[0]);
  });

  it('refuses a client certificate from another CA at the handshake, also with optional client auth', async () => {
    const stranger = pki.stranger().issue({ name: 'app', usage: 'client' });
    const client = grpcJs(ChiefOfStateService, stranger);
    const code = await codeOf(client.unary(processCommand, create(ProcessCommandRequestSchema, { entityId: 'e' }), { metadata: bearer(API_TOKEN) }));
    expect(code).toBe(grpc.status.UNAVAILABLE);
    client.close();
  });

  it('takes a rotated token file without a restart', async () => {
    const rotated = 'rotated-token-0123456789';
    writeFileSync(tokensFile, `${rotated}\n`);
    const client = grpcJs(ChiefOfStateService);
    const request = create(ProcessCommandRequestSchema, { entityId: 'e' });
    await pollUntil(
      async () => (await codeOf(client.unary(processCommand, request, { metadata: bearer(rotated) }))) === grpc.status.OK,
      5000,
      'the rotated token accepted',
    );
    expect(await codeOf(client.unary(processCommand, request, { metadata: bearer(API_TOKEN) }))).toBe(grpc.status.UNAUTHENTICATED);
    client.close();
  });

  it('serves h2 over ALPN', async () => {
    const protocol = await new Promise<string | false>((resolve, reject) => {
      const socket = tlsConnect({ host: '127.0.0.1', port: server.port, servername: 'localhost', ca: pki.ca, ALPNProtocols: ['h2'] }, () => {
        resolve(socket.alpnProtocol ?? false);
        socket.destroy();
      });
      socket.on('error', reject);
    });
    expect(protocol).toBe('h2');
  });
});

// HTTP and JSON end to end, over real processes: the built cos-server with both front ends, the
// stock grpc-js test handler (types COS does not know) and the sample bank handler (bank.v1,
// given to COS as a descriptor set built by buf). Clients: node's fetch (HTTP/1.1), node:http2
// with prior knowledge and over TLS, a client written to the upstream HTTP shape only, and a
// stock grpc-js reflection client loading the reflection .proto.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { create, createFileRegistry, fromBinary, toBinary } from '@bufbuild/protobuf';
import { AnySchema, FileDescriptorProtoSchema, FileDescriptorSetSchema, type Any } from '@bufbuild/protobuf/wkt';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testStoreKinds } from '@chiefofstate/postgres/testing';
import { createTestPki } from '@chiefofstate/testing';
import { command, startCos, stateOf, type CosFixture } from './support/cos-fixture.js';
import {
  base64Any,
  buildBankDescriptorSet,
  h2Json,
  h2Session,
  http1Json,
  startBankHandler,
  upstreamHttpClient,
} from './support/json-clients.js';
import { freePort, startCosServerProcess, startTestHandler, type RunningProcess } from './support/processes.js';

const hasServer = (await testStoreKinds()).includes('postgres');
const TOKEN = 'http-e2e-token-0123456789';
const AUTH = { authorization: `Bearer ${TOKEN}` };
const GET_STATE = '/chief_of_state.v1.ChiefOfStateService/GetState';
const PROCESS = '/chief_of_state.v1.ChiefOfStateService/ProcessCommand';

describe.runIf(hasServer)('HTTP and JSON: types COS does not know (no descriptor set)', () => {
  let handler: RunningProcess & { port: number };
  let cos: CosFixture;
  let httpBase: string;
  let grpcBase: string;
  const dir = mkdtempSync(join(tmpdir(), 'cos-http-e2e-'));

  beforeAll(async () => {
    writeFileSync(join(dir, 'tokens'), `${TOKEN}\n`);
    handler = await startTestHandler();
    const httpPort = await freePort();
    cos = await startCos({
      WRITE_SIDE_HANDLER_SERVICE_HOST: '127.0.0.1',
      WRITE_SIDE_HANDLER_SERVICE_PORT: String(handler.port),
      COS_SERVER_PROTOCOL: 'both',
      COS_HTTP_PORT: String(httpPort),
      COS_WRITE_SIDE_PROPAGATED_HEADERS: 'x-tenant',
      COS_WRITE_PERSISTED_HEADERS: 'x-user',
      COS_AUTH_TOKENS_FILE: join(dir, 'tokens'),
      COS_COMMAND_HANDLER_TIMEOUT: '1',
      COS_GRPC_CALLS_TIMEOUT: '1000',
      COS_GRPC_MAX_MESSAGE_BYTES: '65536',
    });
    httpBase = `http://127.0.0.1:${httpPort}`;
    grpcBase = `http://127.0.0.1:${cos.port}`;
  }, 60_000);

  afterAll(async () => {
    await cos?.dispose();
    await handler?.kill();
  });

  it('answers Connect JSON on the gRPC port over HTTP/1.1 and HTTP/2, Anys as base64 of the serialized Any (no 500)', async () => {
    const sent = await fetch(`${grpcBase}${PROCESS}`, {
      method: 'POST',
      headers: { ...AUTH, 'content-type': 'application/json', 'x-tenant': 'acme' },
      body: JSON.stringify({ entityId: 'cj-1', command: base64Any(command('Emit', { events: ['opened'] })) }),
    });
    expect(sent.status).toBe(200);
    const processed = (await sent.json()) as { state: string; meta: { revisionNumber: number } };
    const state = fromBinary(AnySchema, Buffer.from(processed.state, 'base64'));
    expect(state.typeUrl).toBe('type.googleapis.com/cos.test.State');
    expect(stateOf(state)).toMatchObject({ events: ['opened'], headers: { command: { 'x-tenant': 'acme' } } });
    expect(processed.meta.revisionNumber).toBe(1);

    const session = h2Session(grpcBase);
    try {
      const read = await h2Json(session, GET_STATE, { body: { entityId: 'cj-1' }, headers: AUTH });
      expect(read.status).toBe(200);
      expect(read.json['state']).toBe(processed.state);
      const missing = await h2Json(session, GET_STATE, { body: { entityId: 'nobody' }, headers: AUTH });
      expect(missing).toMatchObject({ status: 404, json: { code: 'not_found' } });
    } finally {
      session.close();
    }
    // the same entity through the stock gRPC client, on the same port
    const metadata = new grpc.Metadata();
    metadata.set('authorization', AUTH.authorization);
    expect(stateOf((await cos.send('cj-1', command('Emit', { events: ['more'] }), { metadata })).response.state).events).toEqual(['opened', 'more']);
  });

  it('serves the upstream HTTP front end to an upstream-shaped client: headers offered to the rules, the path id winning', async () => {
    const client = upstreamHttpClient(httpBase, AUTH);
    const opened = await client.processCommand('up-1', command('Emit', { events: ['a', 'b'] }), { 'x-tenant': 'acme', 'x-user': 'ann' });
    expect(stateOf(opened.state)).toMatchObject({ events: ['a', 'b'], headers: { command: { 'x-tenant': 'acme' } }, persistedHeaderKeys: ['x-user'] });
    expect(opened.meta).toMatchObject({ entity_id: 'up-1', revision_number: 2, headers: [{ key: 'x-user', string_value: 'ann' }] });
    expect(opened.meta.revision_date).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
    const read = await client.getState('up-1');
    expect(read.state).toEqual(opened.state);
    // a body naming another entity: the path's id wins
    const other = await http1Json(`${httpBase}/v1/commands/up-2/process`, {
      body: { entity_id: 'up-1', command: base64Any(command('Emit')) },
      headers: AUTH,
    });
    expect(other.json).toMatchObject({ meta: { entity_id: 'up-2', revision_number: 1 } });
  });

  it('answers over HTTP/2 prior knowledge too, and the OpenAPI document', async () => {
    const session = h2Session(httpBase);
    try {
      const read = await h2Json(session, '/v1/entities/up-1/state', { headers: AUTH });
      expect(read).toMatchObject({ status: 200, json: { meta: { entity_id: 'up-1', revision_number: 2 } } });
      const document = await h2Json(session, '/openapi.json');
      expect(document.json).toMatchObject({ openapi: '3.1.0', paths: { '/v1/commands/{entityId}/process': {}, '/v1/entities/{entityId}/state': {} } });
    } finally {
      session.close();
    }
  });

  // every failure class: [what, HTTP status, gRPC code, request]
  type Send = () => Promise<{ status: number; json: Record<string, unknown> }>;
  const failures: Array<[string, number, number, Send]> = [
    ['no credential', 401, 16, () => http1Json(`${httpBase}/v1/entities/up-1/state`)],
    ['GetState of an entity without events', 404, 5, () => http1Json(`${httpBase}/v1/entities/nobody/state`, { headers: AUTH })],
    ['an entity id over 255 characters', 400, 3, () => http1Json(`${httpBase}/v1/entities/${'x'.repeat(256)}/state`, { headers: AUTH })],
    ['a body that is not the request', 400, 3, () => http1Json(`${httpBase}/v1/commands/f-1/process`, { body: { command: 42 }, headers: AUTH })],
    [
      'a body over COS_GRPC_MAX_MESSAGE_BYTES',
      429,
      8,
      () => http1Json(`${httpBase}/v1/commands/f-1/process`, { body: { command: 'A'.repeat(70_000) }, headers: AUTH }),
    ],
    [
      'a wrong x-cos-expected-revision',
      412,
      9,
      () => http1Json(`${httpBase}/v1/commands/up-1/process`, { body: { command: base64Any(command('Emit')) }, headers: { ...AUTH, 'x-cos-expected-revision': '9' } }),
    ],
    [
      'a handler slower than COS_COMMAND_HANDLER_TIMEOUT',
      504,
      4,
      () => http1Json(`${httpBase}/v1/commands/f-2/process`, { body: { command: base64Any(command('Slow', { ms: 3000 })) }, headers: AUTH }),
    ],
    ...(
      [
        [3, 400],
        [5, 404],
        [6, 409],
        [7, 403],
        [8, 429],
        [9, 412],
        [10, 409],
        [11, 400],
        [12, 501],
        [13, 500],
        [14, 503],
        [16, 401],
      ] as const
    ).map(
      ([code, status]) =>
        [
          `the handler failing with gRPC code ${code}`,
          status,
          code,
          () => http1Json(`${httpBase}/v1/commands/f-3/process`, { body: { command: base64Any(command('Fail', { code, message: `no ${code}` })) }, headers: AUTH }),
        ] as [string, number, number, Send],
    ),
  ];

  it.each(failures)('answers %s with HTTP %i (code %i in the body)', async (_what, status, code, send) => {
    const reply = await send();
    expect({ status: reply.status, code: reply.json['code'] }).toEqual({ status, code });
    expect(reply.json).toMatchObject({ status: expect.stringMatching(/^[A-Z_]+$/), message: expect.any(String), details: expect.any(Array) });
    expect(reply.json['error']).toBe(reply.json['message']);
  });

  it("keeps a handler's message and rich details in the body, and COS's ErrorInfo decoded", async () => {
    const refused = await http1Json(`${httpBase}/v1/commands/f-4/process`, {
      body: { command: base64Any(command('Fail', { message: 'insufficient funds: 3 < 5' })) },
      headers: AUTH,
    });
    expect(refused.status).toBe(412);
    const detail = fromBinary(AnySchema, Buffer.from((refused.json['details'] as string[])[0]!, 'base64'));
    expect(refused.json['message']).toBe('insufficient funds: 3 < 5');
    expect(detail.typeUrl).toBe('type.googleapis.com/cos.test.Detail');
    const mismatch = await http1Json(`${httpBase}/v1/commands/up-1/process`, {
      body: { command: base64Any(command('Emit')) },
      headers: { ...AUTH, 'x-cos-expected-revision': '9' },
    });
    expect(mismatch.json['details']).toEqual([
      { '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: 'REVISION_MISMATCH', domain: 'chiefofstate', metadata: { expected: '9', actual: '2' } },
    ]);
  });
});

describe.runIf(hasServer)('HTTP and JSON: the user types of COS_PROTO_DESCRIPTOR_SET, reflection, TLS', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cos-http-types-'));
  const pki = createTestPki();
  const serverCert = pki.issue({ name: 'cos-server', dns: ['localhost'], ips: ['127.0.0.1'] });
  const app = pki.issue({ name: 'app', usage: 'client' });
  const stranger = pki.issue({ name: 'stranger', usage: 'client' });
  const descriptorSet = buildBankDescriptorSet(dir);
  const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(descriptorSet)));
  const OpenAccount = registry.getMessage('bank.v1.OpenAccount')!;
  let bank: RunningProcess & { port: number };
  let cos: CosFixture;
  let httpPort: number;

  beforeAll(async () => {
    writeFileSync(join(dir, 'tokens'), `${TOKEN}\n`);
    bank = await startBankHandler();
    httpPort = await freePort();
    cos = await startCos({
      WRITE_SIDE_HANDLER_SERVICE_HOST: '127.0.0.1',
      WRITE_SIDE_HANDLER_SERVICE_PORT: String(bank.port),
      COS_SERVER_PROTOCOL: 'both',
      COS_HTTP_PORT: String(httpPort),
      COS_PROTO_DESCRIPTOR_SET: descriptorSet,
      COS_TLS_CERT_FILE: serverCert.certFile,
      COS_TLS_KEY_FILE: serverCert.keyFile,
      // clients without a certificate come in with a token
      COS_TLS_CLIENT_CA_FILE: pki.caFile,
      COS_TLS_CLIENT_AUTH: 'optional',
      COS_AUTH_TOKENS_FILE: join(dir, 'tokens'),
      COS_AUTH_CLIENT_NAMES: 'app',
    });
  }, 60_000);

  afterAll(async () => {
    await cos?.dispose();
    await bank?.kill();
    pki.remove();
  });

  const open = (owner: string, cents: bigint): Any =>
    create(AnySchema, { typeUrl: 'type.googleapis.com/bank.v1.OpenAccount', value: toBinary(OpenAccount, create(OpenAccount, { owner, initialDepositCents: cents })) });

  it('takes and renders Connect JSON as proto3 JSON with @type, over TLS with HTTP/1.1 and HTTP/2', async () => {
    const opened = await http1Json(`https://localhost:${cos.port}${PROCESS}`, {
      ca: pki.ca,
      headers: AUTH,
      body: { entityId: 'acc-1', command: { '@type': 'type.googleapis.com/bank.v1.OpenAccount', owner: 'ann', initialDepositCents: '1500' } },
    });
    expect(opened.status).toBe(200);
    expect(opened.json['state']).toEqual({
      '@type': 'type.googleapis.com/bank.v1.BankAccount',
      accountId: 'acc-1',
      owner: 'ann',
      balanceCents: '1500',
      status: 'ACCOUNT_STATUS_OPEN',
    });
    const session = h2Session(`https://localhost:${cos.port}`, { ca: pki.ca });
    try {
      const read = await h2Json(session, GET_STATE, { body: { entityId: 'acc-1' }, headers: AUTH });
      expect(read.json['state']).toEqual(opened.json['state']);
      expect((await h2Json(session, GET_STATE, { body: { entityId: 'acc-1' } })).status).toBe(401);
    } finally {
      session.close();
    }
  });

  it('serves the HTTP front end over TLS: base64 for upstream clients, proto3 JSON with ?any=json', async () => {
    const base = `https://localhost:${httpPort}`;
    const opened = await http1Json(`${base}/v1/commands/acc-2/process`, { ca: pki.ca, headers: AUTH, body: { command: base64Any(open('bea', 200n)) } });
    expect(opened.status).toBe(200);
    const state = fromBinary(AnySchema, Buffer.from(opened.json['state'] as string, 'base64'));
    expect(state.typeUrl).toBe('type.googleapis.com/bank.v1.BankAccount');
    const session = h2Session(base, { ca: pki.ca });
    try {
      const read = await h2Json(session, '/v1/entities/acc-2/state?any=json', { headers: AUTH });
      expect(read.json).toMatchObject({
        state: { '@type': 'type.googleapis.com/bank.v1.BankAccount', account_id: 'acc-2', owner: 'bea', balance_cents: '200' },
        // opened with a first deposit: two events
        meta: { entity_id: 'acc-2', revision_number: 2 },
      });
      const refused = await h2Json(session, '/v1/commands/acc-2/process', {
        headers: AUTH,
        body: { command: { '@type': 'type.googleapis.com/bank.v1.Withdraw', amount_cents: '999' } },
      });
      // the handler's FAILED_PRECONDITION, with its bank.v1.InsufficientFunds detail rendered from the set
      expect(refused.status).toBe(412);
      expect(refused.json['details']).toEqual([expect.objectContaining({ '@type': 'type.googleapis.com/bank.v1.InsufficientFunds' })]);
    } finally {
      session.close();
    }
    expect((await http1Json(`${base}/v1/entities/acc-2/state`, { ca: pki.ca })).status).toBe(401);
  });

  it('takes client certificates on the HTTP front end as on gRPC, over HTTP/1.1 and HTTP/2', async () => {
    const base = `https://localhost:${httpPort}`;
    const asApp = await http1Json(`${base}/v1/entities/acc-2/state`, { ca: pki.ca, cert: app.cert, key: app.key });
    expect(asApp).toMatchObject({ status: 200, json: { meta: { entity_id: 'acc-2' } } });
    const asStranger = await http1Json(`${base}/v1/entities/acc-2/state`, { ca: pki.ca, cert: stranger.cert, key: stranger.key });
    expect(asStranger).toMatchObject({ status: 403, json: { status: 'PERMISSION_DENIED' } });
    const session = h2Session(base, { ca: pki.ca, cert: app.cert, key: app.key });
    try {
      expect((await h2Json(session, '/v1/entities/acc-2/state')).status).toBe(200);
    } finally {
      session.close();
    }
  });

  it('answers server reflection to a stock client: the services, and the user types of the set', async () => {
    const definition = loadSync('grpc/reflection/v1/reflection.proto', {
      includeDirs: [fileURLToPath(new URL('../../../proto', import.meta.url))],
      oneofs: true,
    });
    const loaded = grpc.loadPackageDefinition(definition) as unknown as {
      grpc: { reflection: { v1: { ServerReflection: grpc.ServiceClientConstructor } } };
    };
    // reflection is open like health: no credential needed
    const client = new loaded.grpc.reflection.v1.ServerReflection(`localhost:${cos.port}`, grpc.credentials.createSsl(Buffer.from(pki.ca)));
    try {
      const call = client['serverReflectionInfo']!() as grpc.ClientDuplexStream<object, Record<string, { service?: Array<{ name: string }>; fileDescriptorProto?: Buffer[] }>>;
      const answers: Array<Record<string, { service?: Array<{ name: string }>; fileDescriptorProto?: Buffer[] }>> = [];
      const ended = new Promise<void>((resolve, reject) => {
        call.on('data', (answer) => answers.push(answer));
        call.on('end', resolve);
        call.on('error', reject);
      });
      call.write({ listServices: '' });
      call.write({ fileContainingSymbol: 'bank.v1.BankAccount' });
      call.end();
      await ended;
      expect(answers[0]!['listServicesResponse']!.service!.map((s) => s.name)).toEqual([
        'chief_of_state.v1.ChiefOfStateService',
        'grpc.health.v1.Health',
        'grpc.reflection.v1.ServerReflection',
        'grpc.reflection.v1alpha.ServerReflection',
      ]);
      const file = fromBinary(FileDescriptorProtoSchema, answers[1]!['fileDescriptorResponse']!.fileDescriptorProto![0]!);
      expect(file.name).toBe('bank/v1/bank.proto');
      expect(file.messageType.map((message) => message.name)).toContain('BankAccount');
    } finally {
      client.close();
    }
  });
});

describe('COS_PROTO_DESCRIPTOR_SET that cannot be used', () => {
  it.each([
    ['missing', (dir: string) => join(dir, 'missing.binpb'), /missing\.binpb cannot be read \(ENOENT\)/],
    [
      'not a descriptor set',
      (dir: string) => {
        writeFileSync(join(dir, 'notes.binpb'), 'not protobuf at all\n');
        return join(dir, 'notes.binpb');
      },
      /notes\.binpb is not a FileDescriptorSet/,
    ],
  ])('stops the start when the file is %s (exit 2, the variable and the file named)', async (_what, file, said) => {
    const dir = mkdtempSync(join(tmpdir(), 'cos-bad-types-'));
    const server = startCosServerProcess({
      WRITE_SIDE_HANDLER_SERVICE_HOST: '127.0.0.1',
      WRITE_SIDE_HANDLER_SERVICE_PORT: '1',
      COS_ADDRESS: '127.0.0.1',
      COS_PORT: String(await freePort()),
      COS_METRICS_PORT: String(await freePort()),
      COS_DATA_DIR: join(dir, 'data'),
      COS_PROTO_DESCRIPTOR_SET: file(dir),
    });
    expect(await server.exited).toBe(2);
    expect(server.output()).toMatch(/COS_PROTO_DESCRIPTOR_SET: /);
    expect(server.output()).toMatch(said);
  });
});

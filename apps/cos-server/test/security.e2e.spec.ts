// The gRPC listener over TLS and mTLS, caller authentication, and the operations port's token,
// end to end: the built cos-server process on the real PostgreSQL, a stock grpc-js write
// handler, certificates issued by a throwaway CA, and stock grpc-js clients.
import { X509Certificate } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { create } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ChiefOfStateService,
  FORWARDED_BY_HEADER,
  FORWARDED_PROOF_HEADER,
  Health,
  HealthCheckRequestSchema,
  ProcessCommandRequestSchema,
  ReadSideManagerService,
} from '@chiefofstate/protocol';
import { createGrpcJsClient, createTestPki, pollUntil, type GrpcJsClient, type IssuedCertificate } from '@chiefofstate/testing';
import { command, startCos, type CosFixture } from './support/cos-fixture.js';
import { freePort, startCosServerProcess, startTestHandler, type RunningProcess } from './support/processes.js';

const API_TOKEN = 'api-token-e2e-0123456789';
const ADMIN_TOKEN = 'admin-token-e2e-0123456789';
const METRICS_TOKEN = 'metrics-token-e2e-0123456789';

describe('cos-server security: TLS, mTLS, caller authentication, the metrics token', () => {
  const pki = createTestPki();
  const serverCert = pki.issue({ name: 'cos-server', dns: ['localhost'], ips: ['127.0.0.1'] });
  const app = pki.issue({ name: 'app', usage: 'client' });
  const operator = pki.issue({ name: 'operator', uris: ['spiffe://cluster.local/ns/ops/sa/operator'], usage: 'client' });
  const replica = pki.issue({ name: 'cos-replica', usage: 'client' });
  const apiTokens = join(pki.dir, 'api-tokens');
  const adminTokens = join(pki.dir, 'admin-tokens');
  const metricsTokens = join(pki.dir, 'metrics-tokens');
  const clients: GrpcJsClient[] = [];
  let handler: RunningProcess & { port: number };
  let cos: CosFixture;

  beforeAll(async () => {
    writeFileSync(apiTokens, `# application tokens\n${API_TOKEN}\n`);
    writeFileSync(adminTokens, `${ADMIN_TOKEN}\n`);
    writeFileSync(metricsTokens, `${METRICS_TOKEN}\n`);
    handler = await startTestHandler();
    cos = await startCos({
      WRITE_SIDE_HANDLER_SERVICE_HOST: '127.0.0.1',
      WRITE_SIDE_HANDLER_SERVICE_PORT: String(handler.port),
      COS_TLS_CERT_FILE: serverCert.certFile,
      COS_TLS_KEY_FILE: serverCert.keyFile,
      COS_TLS_CLIENT_CA_FILE: pki.caFile,
      // clients without a certificate may come in with a bearer token
      COS_TLS_CLIENT_AUTH: 'optional',
      COS_TLS_RELOAD_INTERVAL: '0.2',
      COS_AUTH_TOKENS_FILE: apiTokens,
      COS_AUTH_CLIENT_NAMES: 'app',
      COS_ADMIN_TOKENS_FILE: adminTokens,
      COS_ADMIN_CLIENT_NAMES: 'spiffe://cluster.local/ns/ops/sa/operator',
      COS_CLUSTER_PEER_NAMES: 'cos-replica',
      COS_METRICS_ADDRESS: '127.0.0.1',
      COS_METRICS_TOKEN_FILE: metricsTokens,
      // ReadSideManagerService is served; its one read side is off, so nothing is delivered
      COS_READ_SIDE_ENABLED: 'true',
      COS_READ_SIDE_CONFIG__HOST__audit: '127.0.0.1',
      COS_READ_SIDE_CONFIG__PORT__audit: String(handler.port),
      COS_READ_SIDE_CONFIG__ENABLED__audit: 'false',
    });
  }, 60_000);

  afterAll(async () => {
    for (const client of clients) client.close();
    await cos?.dispose();
    await handler?.kill();
    pki.remove();
  });

  const client = (service: typeof ChiefOfStateService | typeof ReadSideManagerService | typeof Health, cert?: IssuedCertificate, ca = pki.ca) => {
    const created = createGrpcJsClient({
      service,
      address: `localhost:${cos.port}`,
      credentials: grpc.credentials.createSsl(Buffer.from(ca), cert ? Buffer.from(cert.key) : null, cert ? Buffer.from(cert.cert) : null),
    });
    clients.push(created);
    return created;
  };
  const bearer = (token: string, extra: Record<string, string> = {}) => {
    const metadata = new grpc.Metadata();
    metadata.set('authorization', `Bearer ${token}`);
    for (const [key, value] of Object.entries(extra)) metadata.set(key, value);
    return metadata;
  };
  const codeOf = (promise: Promise<unknown>) =>
    promise.then(
      () => grpc.status.OK,
      (error: grpc.ServiceError) => error.code,
    );
  const processCommand = (target: GrpcJsClient, entityId: string, metadata?: grpc.Metadata) =>
    target.unary(ChiefOfStateService.method.processCommand, create(ProcessCommandRequestSchema, { entityId, command: command('Emit', { events: ['e'] }) }), {
      ...(metadata ? { metadata } : {}),
    });
  const latestOffset = (target: GrpcJsClient, metadata?: grpc.Metadata) =>
    target.unary(ReadSideManagerService.method.getLatestOffset, create(ReadSideManagerService.method.getLatestOffset.input, { readSideId: 'audit' }), {
      ...(metadata ? { metadata } : {}),
    });
  const serverFingerprint = () =>
    new Promise<string>((resolve, reject) => {
      const socket = tlsConnect({ host: '127.0.0.1', port: cos.port, servername: 'localhost', ca: pki.ca, ALPNProtocols: ['h2'] }, () => {
        resolve(socket.getPeerCertificate().fingerprint256);
        socket.destroy();
      });
      socket.on('error', reject);
    });
  const fingerprintOf = (cert: IssuedCertificate) => new X509Certificate(cert.cert).fingerprint256;

  it('serves a stock grpc-js client over TLS with a bearer token', async () => {
    const { response } = await processCommand(client(ChiefOfStateService), `tls-${Date.now()}`, bearer(API_TOKEN));
    expect(response.meta?.revisionNumber).toBe(1);
  });

  it('serves a stock grpc-js client over mTLS on its certificate alone', async () => {
    const { response } = await processCommand(client(ChiefOfStateService, app), `mtls-${Date.now()}`);
    expect(response.meta?.revisionNumber).toBe(1);
  });

  it('refuses a client without credentials on both services, and logs it without the secret', async () => {
    const anonymous = client(ChiefOfStateService);
    expect(await codeOf(processCommand(anonymous, 'anon'))).toBe(grpc.status.UNAUTHENTICATED);
    expect(await codeOf(processCommand(anonymous, 'anon', bearer('guessed-token-0123456789')))).toBe(grpc.status.UNAUTHENTICATED);
    expect(await codeOf(latestOffset(client(ReadSideManagerService)))).toBe(grpc.status.UNAUTHENTICATED);
    // nothing was written for the refused calls
    expect(await cos.journal('anon')).toHaveLength(0);
    await cos.server.waitFor(/"reason":"unknown bearer token"/, 10_000);
    expect(cos.server.output()).not.toContain('guessed-token');
    // the health service stays open for probes
    const health = client(Health);
    expect(await codeOf(health.unary(Health.method.check, create(HealthCheckRequestSchema)))).toBe(grpc.status.OK);
  });

  it('refuses API credentials on ReadSideManagerService with PERMISSION_DENIED, takes the admin ones', async () => {
    const admin = client(ReadSideManagerService);
    expect(await codeOf(latestOffset(admin, bearer(API_TOKEN)))).toBe(grpc.status.PERMISSION_DENIED);
    expect(await codeOf(latestOffset(client(ReadSideManagerService, app)))).toBe(grpc.status.PERMISSION_DENIED);
    // past the check, the manager answers for its (disabled) read side
    const allowed = [grpc.status.OK, grpc.status.NOT_FOUND, grpc.status.FAILED_PRECONDITION, grpc.status.UNAVAILABLE];
    expect(allowed).toContain(await codeOf(latestOffset(admin, bearer(ADMIN_TOKEN))));
    expect(allowed).toContain(await codeOf(latestOffset(client(ReadSideManagerService, operator))));
    // and an admin credential opens only the admin service
    expect(await codeOf(processCommand(client(ChiefOfStateService, operator), 'op'))).toBe(grpc.status.PERMISSION_DENIED);
  });

  it('cuts a client certificate from another CA, and a client that does not trust the server', async () => {
    const stranger = pki.stranger();
    try {
      const forged = stranger.issue({ name: 'app', usage: 'client' });
      expect(await codeOf(processCommand(client(ChiefOfStateService, forged), 'forged', bearer(API_TOKEN)))).toBe(grpc.status.UNAVAILABLE);
      expect(await codeOf(processCommand(client(ChiefOfStateService, undefined, stranger.ca), 'distrust', bearer(API_TOKEN)))).toBe(
        grpc.status.UNAVAILABLE,
      );
    } finally {
      stranger.remove();
    }
    // a cleartext client cannot talk to the TLS port
    const plain = createGrpcJsClient({ service: ChiefOfStateService, address: `127.0.0.1:${cos.port}` });
    clients.push(plain);
    expect(await codeOf(processCommand(plain, 'plain', bearer(API_TOKEN)))).toBe(grpc.status.UNAVAILABLE);
  });

  it('refuses a spoofed forwarding mark: without the peer certificate, and with it but without a valid proof', async () => {
    const mark = { [FORWARDED_BY_HEADER]: '127.0.0.1:1' };
    // a caller with a valid API token does not become a replica by saying so
    expect(await codeOf(processCommand(client(ChiefOfStateService), 'spoof', bearer(API_TOKEN, mark)))).toBe(grpc.status.UNAUTHENTICATED);
    expect(await codeOf(processCommand(client(ChiefOfStateService, app), 'spoof', bearer(API_TOKEN, mark)))).toBe(grpc.status.UNAUTHENTICATED);
    // the replica's certificate, but no (or a made-up) proof of the cluster secret: the router refuses it
    const peer = client(ChiefOfStateService, replica);
    const noProof = new grpc.Metadata();
    noProof.set(FORWARDED_BY_HEADER, '127.0.0.1:1');
    expect(await codeOf(processCommand(peer, 'spoof', noProof))).toBe(grpc.status.UNAUTHENTICATED);
    noProof.set(FORWARDED_PROOF_HEADER, `v1.1.${Date.now()}.${'A'.repeat(43)}`);
    expect(await codeOf(processCommand(peer, 'spoof', noProof))).toBe(grpc.status.UNAUTHENTICATED);
    expect(await cos.journal('spoof')).toHaveLength(0);
  });

  it('picks up a rotated server certificate without a restart', async () => {
    expect(await serverFingerprint()).toBe(fingerprintOf(serverCert));
    const rotated = pki.issue({ name: 'cos-server', dns: ['localhost'], ips: ['127.0.0.1'] });
    expect(fingerprintOf(rotated)).not.toBe(fingerprintOf(serverCert));
    await pollUntil(async () => (await serverFingerprint()) === fingerprintOf(rotated), 10_000, 'new connections get the rotated certificate');
    // and a new stock client is served with it
    const { response } = await processCommand(client(ChiefOfStateService, app), `rotated-${Date.now()}`);
    expect(response.meta?.revisionNumber).toBe(1);
  });

  it('picks up a rotated token file without a restart', async () => {
    const rotated = 'api-token-rotated-0123456789';
    writeFileSync(apiTokens, `${rotated}\n`);
    const caller = client(ChiefOfStateService);
    await pollUntil(
      async () => (await codeOf(processCommand(caller, `rot-${Date.now()}`, bearer(rotated)))) === grpc.status.OK,
      10_000,
      'the rotated token accepted',
    );
    expect(await codeOf(processCommand(caller, 'old-token', bearer(API_TOKEN)))).toBe(grpc.status.UNAUTHENTICATED);
  });

  it('asks /metrics for its token, keeps /healthz and /readyz open', async () => {
    const url = (path: string) => `http://127.0.0.1:${cos.metricsPort}${path}`;
    const refused = await fetch(url('/metrics'));
    expect(refused.status).toBe(401);
    expect(refused.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect((await fetch(url('/metrics'), { headers: { authorization: `Bearer ${API_TOKEN}` } })).status).toBe(401);
    const scraped = await fetch(url('/metrics'), { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
    expect(scraped.status).toBe(200);
    expect(await scraped.text()).toMatch(/cos_grpc_server_handled_total|cos_/);
    expect((await fetch(url('/healthz'))).status).toBe(200);
    expect((await fetch(url('/readyz'))).status).toBe(200);
  });

  it('does not start with a certificate file it cannot use (exit 2, the file named)', async () => {
    const broken = join(pki.dir, 'broken.crt');
    writeFileSync(broken, 'not a certificate');
    const server = startCosServerProcess({
      WRITE_SIDE_HANDLER_SERVICE_HOST: '127.0.0.1',
      WRITE_SIDE_HANDLER_SERVICE_PORT: String(handler.port),
      COS_ADDRESS: '127.0.0.1',
      COS_PORT: String(await freePort()),
      COS_METRICS_PORT: String(await freePort()),
      COS_DATA_DIR: join(pki.dir, 'data'),
      COS_TLS_CERT_FILE: broken,
      COS_TLS_KEY_FILE: serverCert.keyFile,
    });
    expect(await server.exited).toBe(2);
    expect(server.output()).toContain(`cannot use ${broken}`);
  });
});

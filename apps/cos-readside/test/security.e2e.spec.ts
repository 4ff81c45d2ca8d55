// ReadSideManagerService of the built cos-readside behind its admin credential
// (COS_ADMIN_TOKENS_FILE) over TLS: stock grpc-js clients without a token, with an application's
// token and with an operator's token; the real PostgreSQL and a read-side handler process.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testPostgresEnv, testStoreKinds } from '@chiefofstate/postgres/testing';
import { Health, HealthCheckRequestSchema, ReadSideManagerService } from '@chiefofstate/protocol';
import { createGrpcJsClient, createTestPki, type GrpcJsClient } from '@chiefofstate/testing';
import { newSchema, openStore, readSidesEnv, startHandler, startReadside, type Readside, type Store } from './support/fixture.js';

const hasServer = (await testStoreKinds()).includes('postgres');

const API_TOKEN = 'api-token-readside-e2e-0123456789';
const ADMIN_TOKEN = 'admin-token-readside-e2e-0123456789';

describe.runIf(hasServer)('cos-readside: ReadSideManagerService behind the admin credential', () => {
  const pki = createTestPki('cos-readside-pki-');
  const serverCert = pki.issue({ name: 'cos-readside', usage: 'server' });
  const schema = newSchema();
  const clients: GrpcJsClient[] = [];
  let handler: Awaited<ReturnType<typeof startHandler>>;
  let readside: Readside;
  let store: Store;

  beforeAll(async () => {
    const apiTokens = join(pki.dir, 'api-tokens');
    const adminTokens = join(pki.dir, 'admin-tokens');
    writeFileSync(apiTokens, `${API_TOKEN}\n`);
    writeFileSync(adminTokens, `${ADMIN_TOKEN}\n`);
    handler = await startHandler(join(pki.dir, 'rules.json'));
    readside = await startReadside({
      ...testPostgresEnv(schema),
      ...readSidesEnv(handler.port, [{ id: 'audit' }]),
      COS_TLS_CERT_FILE: serverCert.certFile,
      COS_TLS_KEY_FILE: serverCert.keyFile,
      // the same token files as the cos-server replicas: the application's must not open this service
      COS_AUTH_TOKENS_FILE: apiTokens,
      COS_ADMIN_TOKENS_FILE: adminTokens,
    });
    store = await openStore(schema);
  }, 90_000);

  afterAll(async () => {
    for (const client of clients) client.close();
    await readside?.stop();
    await handler?.kill();
    await store?.dispose();
    pki.remove();
  });

  const client = (service: typeof ReadSideManagerService | typeof Health) => {
    const created = createGrpcJsClient({
      service,
      address: `localhost:${readside.port}`,
      credentials: grpc.credentials.createSsl(Buffer.from(pki.ca)),
    });
    clients.push(created);
    return created;
  };
  const bearer = (token: string) => {
    const metadata = new grpc.Metadata();
    metadata.set('authorization', `Bearer ${token}`);
    return metadata;
  };
  const latestOffset = (metadata?: grpc.Metadata) =>
    client(ReadSideManagerService).unary(
      ReadSideManagerService.method.getLatestOffset,
      create(ReadSideManagerService.method.getLatestOffset.input, { readSideId: 'audit' }),
      { ...(metadata ? { metadata } : {}), deadline: Date.now() + 20_000 },
    );
  const codeOf = (promise: Promise<unknown>) =>
    promise.then(
      () => 'OK',
      (error: grpc.ServiceError) => grpc.status[error.code] ?? String(error),
    );

  it('refuses a call without the admin token (UNAUTHENTICATED), logged without the token', async () => {
    expect(await codeOf(latestOffset())).toBe('UNAUTHENTICATED');
    expect(await codeOf(latestOffset(bearer('guessed-token-0123456789')))).toBe('UNAUTHENTICATED');
    await readside.waitFor(/"reason":"no credential"/, 10_000);
    expect(readside.output()).not.toContain('guessed-token');
  });

  it("refuses the application's API token (PERMISSION_DENIED)", async () => {
    expect(await codeOf(latestOffset(bearer(API_TOKEN)))).toBe('PERMISSION_DENIED');
    // the log line may reach the pipe after the answer
    await readside.waitFor(/"reason":"the token is not one of this service"/, 10_000);
    expect(readside.output()).not.toContain(API_TOKEN);
  });

  it('answers the admin token, and keeps grpc.health.v1 open', async () => {
    await store.append('rs-sec-1', 2);
    const { response } = await latestOffset(bearer(ADMIN_TOKEN));
    expect(response.offsets.length).toBeGreaterThan(0);
    expect(readside.output()).not.toContain(ADMIN_TOKEN);
    const health = client(Health);
    expect(await codeOf(health.unary(Health.method.check, create(HealthCheckRequestSchema)))).toBe('OK');
  });
});

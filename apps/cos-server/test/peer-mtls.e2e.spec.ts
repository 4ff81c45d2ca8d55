// Two cos-server replicas on one PostgreSQL schema, each serving TLS with client certificates
// required and caller authentication on, forwarding to each other over mTLS with their own
// certificates (checked against COS_CLUSTER_PEER_NAMES), dialled by IP and checked by
// COS_CLUSTER_TLS_SERVER_NAME: the built processes, certificates made by the test (a throwaway
// CA), stock grpc-js clients presenting the application's certificate and a bearer token.
import { X509Certificate } from 'node:crypto';
import { copyFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { create } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createForwardingAuth } from '@chiefofstate/cluster';
import { shardOf } from '@chiefofstate/core';
import { testStoreKinds, uniqueSchemaName } from '@chiefofstate/postgres/testing';
import {
  ChiefOfStateService,
  FORWARDED_BY_HEADER,
  FORWARDED_PROOF_HEADER,
  GetStateRequestSchema,
  ProcessCommandRequestSchema,
  type GetStateResponse,
  type ProcessCommandResponse,
} from '@chiefofstate/protocol';
import { createGrpcJsClient, createTestPki, pollUntil, type GrpcJsClient, type IssuedCertificate } from '@chiefofstate/testing';
import { entitiesOfAllShards, metric, NUM_SHARDS, shardsOf, shardsSettle } from './support/cluster.js';
import { command, startCos, stateOf, type CosFixture } from './support/cos-fixture.js';
import { startTestHandler, type RunningProcess } from './support/processes.js';

const hasServer = (await testStoreKinds()).includes('postgres');

const API_TOKEN = 'api-token-peer-e2e-0123456789';
const METRICS_TOKEN = 'metrics-token-peer-e2e-0123456789';
const CLUSTER_SECRET = 'cluster-secret-peer-e2e-0123456789';
/** the name every replica's certificate carries and peers check (COS_CLUSTER_TLS_SERVER_NAME) */
const PEER_HOST = 'cos-peer.internal';

describe.runIf(hasServer)('cos-server replicas forwarding to each other over mTLS', () => {
  const pki = createTestPki('cos-peer-mtls-');
  // replicas: server and client usage, a DNS name only (they are dialled by IP), CN = peer name
  const replicaCert = (name: string) => pki.issue({ name, dns: [PEER_HOST], ips: [], usage: 'both' });
  const certs = { a: replicaCert('replica-a'), b: replicaCert('replica-b') };
  const app = pki.issue({ name: 'app', usage: 'client' });
  // the same CA, the replicas' DNS name, but an identity not in COS_CLUSTER_PEER_NAMES
  const intruder = replicaCert('intruder');
  const apiTokens = join(pki.dir, 'api-tokens');
  const metricsTokens = join(pki.dir, 'metrics-tokens');
  const clients: GrpcJsClient[] = [];
  let handler: RunningProcess & { port: number };
  let a: CosFixture;
  let b: CosFixture;

  beforeAll(async () => {
    writeFileSync(apiTokens, `${API_TOKEN}\n`);
    writeFileSync(metricsTokens, `${METRICS_TOKEN}\n`);
    handler = await startTestHandler();
    const schema = uniqueSchemaName('peer_mtls');
    const env = (cert: IssuedCertificate) => ({
      WRITE_SIDE_HANDLER_SERVICE_HOST: '127.0.0.1',
      WRITE_SIDE_HANDLER_SERVICE_PORT: String(handler.port),
      POD_IP: '127.0.0.1',
      COS_COMMAND_HANDLER_TIMEOUT: '20',
      COS_NUM_SHARDS: String(NUM_SHARDS),
      COS_CLUSTER_SECRET: CLUSTER_SECRET,
      COS_TLS_CERT_FILE: cert.certFile,
      COS_TLS_KEY_FILE: cert.keyFile,
      // client certificates required (COS_TLS_CLIENT_AUTH defaults to required)
      COS_TLS_CLIENT_CA_FILE: pki.caFile,
      COS_TLS_RELOAD_INTERVAL: '0.2',
      COS_AUTH_TOKENS_FILE: apiTokens,
      COS_CLUSTER_PEER_NAMES: 'replica-a,replica-b',
      COS_CLUSTER_TLS_SERVER_NAME: PEER_HOST,
      COS_METRICS_TOKEN_FILE: metricsTokens,
    });
    a = await startCos(env(certs.a), schema);
    b = await startCos(env(certs.b), schema);
    await shardsSettle([a, b], [NUM_SHARDS / 2, NUM_SHARDS / 2], 60_000, METRICS_TOKEN);
  }, 120_000);

  afterAll(async () => {
    for (const client of clients) client.close();
    await Promise.all([a, b].map((replica) => replica?.server.kill('SIGKILL')));
    await a?.dispose().catch(() => {});
    await b?.dispose().catch(() => {});
    await handler?.kill();
    pki.remove();
  });

  /** a stock grpc-js client of a replica over mTLS, checking the replica's name like its peers */
  const clientOf = (replica: CosFixture, cert: IssuedCertificate) => {
    const created = createGrpcJsClient({
      service: ChiefOfStateService,
      address: `127.0.0.1:${replica.port}`,
      credentials: grpc.credentials.createSsl(Buffer.from(pki.ca), Buffer.from(cert.key), Buffer.from(cert.cert)),
      channelOptions: { 'grpc.ssl_target_name_override': PEER_HOST },
    });
    clients.push(created);
    return created;
  };
  const metadataOf = (headers: Record<string, string>) => {
    const metadata = new grpc.Metadata();
    for (const [key, value] of Object.entries(headers)) metadata.set(key, value);
    return metadata;
  };
  const withToken = (extra: Record<string, string> = {}) => metadataOf({ authorization: `Bearer ${API_TOKEN}`, ...extra });
  const send = (client: GrpcJsClient, entityId: string, event: string, metadata = withToken(), deadlineMs = 20_000): Promise<ProcessCommandResponse> =>
    client
      .unary(ChiefOfStateService.method.processCommand, create(ProcessCommandRequestSchema, { entityId, command: command('Emit', { events: [event] }) }), {
        metadata,
        deadline: Date.now() + deadlineMs,
      })
      .then((result) => result.response);
  const getState = (client: GrpcJsClient, entityId: string): Promise<GetStateResponse> =>
    client
      .unary(ChiefOfStateService.method.getState, create(GetStateRequestSchema, { entityId }), { metadata: withToken(), deadline: Date.now() + 20_000 })
      .then((result) => result.response);
  const codeOf = (promise: Promise<unknown>) => outcomeOf(promise).then(({ code }) => code);
  const outcomeOf = (promise: Promise<unknown>) =>
    promise.then(
      () => ({ code: 'OK', details: '' }),
      (error: grpc.ServiceError) => ({ code: grpc.status[error.code] ?? String(error), details: error.details }),
    );
  const forwarded = (replica: CosFixture, outcome: string) =>
    metric(replica, 'cos_forwarded_calls_total', { outcome }, METRICS_TOKEN).then((n) => n ?? 0);
  const revisions = async (entityId: string) => (await a.journal(entityId)).map((row) => Number(row.revision));
  /** entity ids (`perShard` per shard) owned by `replica` now */
  const ownedBy = async (replica: CosFixture, prefix: string, perShard = 1) => {
    const shards = await shardsOf(replica);
    return entitiesOfAllShards(prefix, perShard).filter((id) => shards.has(shardOf(id, NUM_SHARDS)));
  };
  /** the fingerprint of the certificate a replica serves to a new connection */
  const servedFingerprint = (replica: CosFixture) =>
    new Promise<string>((resolve, reject) => {
      const socket = tlsConnect(
        { host: '127.0.0.1', port: replica.port, servername: PEER_HOST, ca: pki.ca, cert: app.cert, key: app.key, ALPNProtocols: ['h2'] },
        () => {
          resolve(socket.getPeerCertificate().fingerprint256);
          socket.destroy();
        },
      );
      socket.on('error', reject);
    });
  const fingerprintOf = (cert: IssuedCertificate) => new X509Certificate(cert.cert).fingerprint256;

  it("forwards the commands of B's entities from A over mTLS, and GetState through either replica agrees", async () => {
    const toA = clientOf(a, app);
    const toB = clientOf(b, app);
    const entities = entitiesOfAllShards('mtls', 2);
    const ofB = await ownedBy(b, 'mtls');
    expect(ofB.length).toBe(NUM_SHARDS / 2);
    const before = await forwarded(a, 'forwarded');
    for (let round = 1; round <= 2; round++) {
      const answers = await Promise.all(entities.map((id) => send(toA, id, `r${round}`)));
      expect(answers.map((r) => r.meta?.revisionNumber)).toEqual(entities.map(() => round));
    }
    // every command of B's entities went over A's mTLS connection to B (2 rounds)
    const ownedByB = await shardsOf(b);
    const entitiesOfB = entities.filter((id) => ownedByB.has(shardOf(id, NUM_SHARDS)));
    expect(entitiesOfB.length).toBe(entities.length / 2);
    expect((await forwarded(a, 'forwarded')) - before).toBeGreaterThanOrEqual(entitiesOfB.length * 2);
    expect(await forwarded(a, 'owner_unreachable')).toBe(0);
    for (const id of entities) {
      const [viaA, viaB] = await Promise.all([getState(toA, id), getState(toB, id)]);
      expect(viaA.meta?.revisionNumber, id).toBe(2);
      expect(viaB.meta?.revisionNumber, id).toBe(2);
      expect(stateOf(viaA.state).events, id).toEqual(['r1', 'r2']);
      expect(Buffer.from(viaB.state!.value).equals(Buffer.from(viaA.state!.value)), id).toBe(true);
      expect(await revisions(id), id).toEqual([1, 2]);
    }
    // /metrics wants its token
    expect((await fetch(`http://127.0.0.1:${a.metricsPort}/metrics`)).status).toBe(401);
  }, 120_000);

  it('refuses a forwarded call, even with a valid proof, from a certificate not in COS_CLUSTER_PEER_NAMES; writes nothing', async () => {
    // the cluster secret is known here, so the proof is valid: only the certificate decides
    const auth = createForwardingAuth({ secret: CLUSTER_SECRET, maxSkewMs: 30_000 });
    const [target, control] = await ownedBy(a, 'peer-names');
    const mark = (entityId: string, extra: Record<string, string> = {}) =>
      metadataOf({
        [FORWARDED_BY_HEADER]: `127.0.0.1:${b.port}`,
        [FORWARDED_PROOF_HEADER]: auth.prove({ by: `127.0.0.1:${b.port}`, method: 'ProcessCommand', entityId, hops: 1 }),
        ...extra,
      });
    // a certificate of the same CA and the replicas' DNS name, and the application's with its token
    expect(await codeOf(send(clientOf(a, intruder), target!, 'intruder', mark(target!)))).toBe('UNAUTHENTICATED');
    expect(await codeOf(send(clientOf(a, app), target!, 'app', mark(target!, { authorization: `Bearer ${API_TOKEN}` })))).toBe('UNAUTHENTICATED');
    expect(await revisions(target!)).toEqual([]);
    await a.server.waitFor(/forwarded call from a certificate not in COS_CLUSTER_PEER_NAMES/, 5_000);
    // the same forged call with a replica's certificate is taken: the test can tell the two apart
    expect(await codeOf(send(clientOf(a, certs.b), control!, 'peer', mark(control!)))).toBe('OK');
    expect(await revisions(control!)).toEqual([1]);
  }, 60_000);

  /** writes `cert`'s files over B's certificate and key (renamed into place, key first) */
  const installOnB = (cert: IssuedCertificate) => {
    for (const [from, to] of [
      [cert.keyFile, certs.b.keyFile],
      [cert.certFile, certs.b.certFile],
    ] as const) {
      copyFileSync(from, `${to}.tmp`);
      renameSync(`${to}.tmp`, to);
    }
  };

  it("takes a rotated replica certificate without a restart: B's new connections to A present it, and A checks its name", async () => {
    const toB = clientOf(b, app);
    // a fresh entity of A's for each command, so a refused one must have no journal row at all
    const ofA = await ownedBy(a, 'rotate', 40);
    let n = 0;
    /**
     * a command sent to B for a new entity of A's (forwarded to A): the entity and the outcome;
     * a short deadline, since B tries an owner that refuses it until then
     */
    const forwardFromB = async () => {
      const id = ofA[n++]!;
      return { id, ...(await outcomeOf(send(toB, id, 'e', withToken(), 3_000))) };
    };
    expect((await forwardFromB()).code).toBe('OK');

    // 1. a new certificate for B, same name: served to new connections, and B's peer connection
    // retired so that its next one presents it; forwarding goes on
    expect(await servedFingerprint(b)).toBe(fingerprintOf(certs.b));
    const renewed = pki.issue({ name: 'replica-b', dns: [PEER_HOST], ips: [], usage: 'both' });
    const renewedSerial = new X509Certificate(renewed.cert).serialNumber;
    await pollUntil(async () => (await servedFingerprint(b)) === fingerprintOf(renewed), 20_000, 'B serves its renewed certificate');
    await pollUntil(
      () => b.server.output().split('\n').some((line) => line.includes('peers: TLS files changed') && line.includes(`"certSerial":"${renewedSerial}"`)),
      20_000,
      "B's peer client took the renewed certificate",
    );
    for (let i = 0; i < 4; i++) expect((await forwardFromB()).code).toBe('OK');

    // 2. B's certificate replaced by one whose name is not a peer's: A refuses what B forwards,
    // which shows B's new connection presents the new certificate; nothing is written, and B's
    // client, whose credentials are fine, is told UNAVAILABLE (retry), not UNAUTHENTICATED
    const refusedBefore = await forwarded(b, 'owner_refused');
    installOnB(intruder);
    const refused: string[] = [];
    const notRefused = (outcome: { code: string }) => outcome.code === 'OK' || outcome.code === 'DEADLINE_EXCEEDED';
    await pollUntil(
      async () => {
        const outcome = await forwardFromB();
        if (!notRefused(outcome)) refused.push(outcome.id);
        expect(notRefused(outcome) || outcome.code === 'UNAVAILABLE', `${outcome.id}: ${outcome.code} ${outcome.details}`).toBe(true);
        return !notRefused(outcome);
      },
      30_000,
      "A refuses B's forwarded calls once B presents a certificate not in COS_CLUSTER_PEER_NAMES",
      100,
    );
    for (let i = 0; i < 3; i++) {
      const { id, code, details } = await forwardFromB();
      // on a loaded machine the refusal may come after the deadline; never anything else
      expect(['UNAVAILABLE', 'DEADLINE_EXCEEDED'], `${id}: ${details}`).toContain(code);
      if (code === 'UNAVAILABLE') expect(details).toBe('the replica owning the entity refused the call; nothing was done');
      refused.push(id);
    }
    for (const id of refused) expect(await revisions(id), id).toEqual([]);
    await a.server.waitFor(/forwarded call from a certificate not in COS_CLUSTER_PEER_NAMES/, 10_000);
    expect(await forwarded(b, 'owner_refused')).toBeGreaterThan(refusedBefore);
    // A still forwards to B: B's certificate still carries the server name, and A is a listed peer
    const [ofB] = await ownedBy(b, 'rotate-b');
    expect(await codeOf(send(clientOf(a, app), ofB!, 'still'))).toBe('OK');

    // 3. B's own certificate back: its forwarded calls are taken again, without a restart
    const restored = pki.issue({ name: 'replica-b', dns: [PEER_HOST], ips: [], usage: 'both' });
    await pollUntil(async () => (await forwardFromB()).code === 'OK', 20_000, "B's forwarded calls taken again with its own certificate", 100);
    expect(await servedFingerprint(b)).toBe(fingerprintOf(restored));
    expect(b.server.child.exitCode).toBeNull();
  }, 120_000);
});

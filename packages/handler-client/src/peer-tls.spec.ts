// Peer forwarding over mTLS, against a node:http2 secure server that requires client
// certificates of the cluster's CA, as a replica with COS_TLS_CLIENT_CA_FILE does.
import { X509Certificate } from 'node:crypto';
import { create, toBinary } from '@bufbuild/protobuf';
import { PeerUnreachableError } from '@chiefofstate/core';
import { FORWARDED_BY_HEADER, MetaDataSchema, ProcessCommandRequestSchema, ProcessCommandResponseSchema } from '@chiefofstate/protocol';
import { createTestPki } from '@chiefofstate/testing';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { watchClientTls } from './client-tls.js';
import { createPeerClients } from './peer-client.js';
import { startSecureGrpcServer } from './test-support/secure-grpc-server.js';

const pki = createTestPki();
const stranger = pki.stranger();
afterAll(() => {
  pki.remove();
  stranger.remove();
});

const respond = () =>
  toBinary(ProcessCommandResponseSchema, create(ProcessCommandResponseSchema, { meta: create(MetaDataSchema, { entityId: 'e-1', revisionNumber: 1 }) }));
const command = create(ProcessCommandRequestSchema, { entityId: 'e-1' });

describe('peer clients over mTLS', () => {
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  /** A replica: one certificate for its listener and as the client of its peers. */
  async function replica(name: string, options: { ca?: typeof pki; dns?: string[]; ips?: string[] } = {}) {
    const cert = (options.ca ?? pki).issue({ name, ...(options.dns ? { dns: options.dns } : {}), ...(options.ips ? { ips: options.ips } : {}) });
    const server = await startSecureGrpcServer({ cert: cert.cert, key: cert.key, clientCa: pki.ca, respond });
    cleanups.push(() => server.close());
    return { cert, server, address: `127.0.0.1:${server.port}` };
  }
  function peersOf(cert: { certFile: string; keyFile: string }, serverName?: string) {
    const tls = watchClientTls({ caFile: pki.caFile, certFile: cert.certFile, keyFile: cert.keyFile, serverName, reloadIntervalMs: 0 });
    const peers = createPeerClients({ self: '127.0.0.1:1', useTls: true, tls, timeoutMs: 5000 });
    cleanups.push(() => tls.close());
    cleanups.push(() => peers.close());
    return peers;
  }

  it("forwards over TLS with the replica's own certificate as client certificate, one connection per peer", async () => {
    const a = await replica('replica-a');
    const b = await replica('replica-b');
    const peers = peersOf(a.cert);
    for (let i = 0; i < 5; i++) expect((await peers.processCommand(b.address, command)).meta?.revisionNumber).toBe(1);
    expect(b.server.calls.map((call) => call.clientSerial)).toEqual(Array(5).fill(new X509Certificate(a.cert.cert).serialNumber));
    expect(b.server.calls[0]?.headers[FORWARDED_BY_HEADER]).toBe('127.0.0.1:1');
    expect(b.server.handshakes()).toBe(1);
  });

  it('checks the peer certificate names the IP dialled, or COS_CLUSTER_TLS_SERVER_NAME when set', async () => {
    const a = await replica('replica-a');
    const named = await replica('replica-named', { dns: ['cos.cluster.internal'], ips: [] });
    await expect(peersOf(a.cert).processCommand(named.address, command)).rejects.toBeInstanceOf(PeerUnreachableError);
    expect((await peersOf(a.cert, 'cos.cluster.internal').processCommand(named.address, command)).meta?.entityId).toBe('e-1');
  });

  it('reports a handshake refused either way as PeerUnreachableError: the peer read nothing, so the command may go elsewhere', async () => {
    const b = await replica('replica-b');
    const intruder = stranger.issue({ name: 'intruder' });
    const refusedByPeer = await peersOf(intruder).processCommand(b.address, command).catch((e: unknown) => e);
    expect(refusedByPeer).toBeInstanceOf(PeerUnreachableError);
    const foreign = await replica('foreign', { ca: stranger });
    const a = await replica('replica-a');
    expect(await peersOf(a.cert).processCommand(foreign.address, command).catch((e: unknown) => e)).toBeInstanceOf(PeerUnreachableError);
    expect(b.server.calls).toHaveLength(0);
    expect(foreign.server.calls).toHaveLength(0);
  });
});

// The handler clients over TLS and mTLS with real certificates of a throwaway CA: trust, the
// name checked, client certificates, rotation of the files without a new client, and the
// connection reused by every call (one handshake, not one per call).
import { X509Certificate } from 'node:crypto';
import { copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { create, toBinary } from '@bufbuild/protobuf';
import { ConfigError, HandlerUnavailableError } from '@chiefofstate/core';
import {
  HandleCommandRequestSchema,
  HandleCommandResponseSchema,
  HandleReadSideResponseSchema,
  HandleReadSideRequestSchema,
  emptyState,
} from '@chiefofstate/protocol';
import { createTestPki, pollUntil, type TestPki } from '@chiefofstate/testing';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { watchClientTls, type ClientTls } from './client-tls.js';
import { createReadSideClient } from './read-side-client.js';
import { startSecureGrpcServer, type SecureGrpcServer } from './test-support/secure-grpc-server.js';
import { createWriteSideClient, type WriteSideClient } from './write-side-client.js';

const pki: TestPki = createTestPki();
const stranger: TestPki = pki.stranger();
afterAll(() => {
  pki.remove();
  stranger.remove();
});

const request = create(HandleCommandRequestSchema, { command: emptyState() });
const respond = (path: string) =>
  path.endsWith('/HandleReadSide')
    ? toBinary(HandleReadSideResponseSchema, create(HandleReadSideResponseSchema, { successful: true }))
    : toBinary(HandleCommandResponseSchema, create(HandleCommandResponseSchema, { events: [emptyState()] }));

describe('handler clients over TLS', () => {
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  const serve = async (options: { ca?: TestPki; name?: string; dns?: string[]; ips?: string[]; mtls?: boolean } = {}) => {
    const issued = (options.ca ?? pki).issue({
      name: options.name ?? 'handler',
      ...(options.dns ? { dns: options.dns } : {}),
      ...(options.ips ? { ips: options.ips } : {}),
      usage: 'server',
    });
    const server = await startSecureGrpcServer({
      cert: issued.cert,
      key: issued.key,
      ...(options.mtls ? { clientCa: pki.ca } : {}),
      respond,
    });
    cleanups.push(() => server.close());
    return server;
  };
  const client = (server: SecureGrpcServer, options: Partial<Parameters<typeof createWriteSideClient>[0]> = {}): WriteSideClient => {
    const created = createWriteSideClient({ host: '127.0.0.1', port: server.port, useTls: true, timeoutMs: 5000, ...options });
    cleanups.push(() => created.close());
    return created;
  };
  const watch = (options: Parameters<typeof watchClientTls>[0]): ClientTls => {
    const tls = watchClientTls({ reloadIntervalMs: 0, ...options });
    cleanups.push(() => tls.close());
    return tls;
  };

  it('calls a handler whose certificate chains to the configured CA, over one connection for every call', async () => {
    const server = await serve();
    const writeSide = client(server, { tls: watch({ caFile: pki.caFile }) });
    for (let i = 0; i < 20; i++) expect((await writeSide.handleCommand(request)).events).toHaveLength(1);
    await Promise.all(Array.from({ length: 50 }, () => writeSide.handleCommand(request)));
    expect(server.calls).toHaveLength(70);
    // one TLS handshake for 70 calls: the connection is reused, not opened per call
    expect(server.handshakes()).toBe(1);
  });

  it('still takes fixed options (PEM in memory)', async () => {
    const server = await serve();
    const writeSide = client(server, { tls: { ca: pki.ca } });
    expect((await writeSide.handleCommand(request)).events).toHaveLength(1);
  });

  it('refuses a handler whose certificate is from another CA, and plaintext to a TLS port, and reports the TLS failure', async () => {
    const server = await serve({ ca: stranger });
    const failures: Error[] = [];
    const untrusted = client(server, { tls: watch({ caFile: pki.caFile }), onTlsFailure: (error) => failures.push(error) });
    const error = await untrusted.handleCommand(request).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(HandlerUnavailableError);
    expect((error as Error).message).toMatch(/certificate/);
    // reported once however many calls fail for the same reason
    await expect(untrusted.handleCommand(request)).rejects.toBeInstanceOf(HandlerUnavailableError);
    expect(failures.map((f) => (f as NodeJS.ErrnoException).code)).toEqual(['UNABLE_TO_VERIFY_LEAF_SIGNATURE']);
    expect(server.calls).toHaveLength(0);

    const plaintext = client(server, { useTls: false, timeoutMs: 1000 });
    await expect(plaintext.handleCommand(request)).rejects.toBeInstanceOf(HandlerUnavailableError);
  });

  it('checks the server name: COS_WRITE_SIDE_TLS_SERVER_NAME, else the host dialled', async () => {
    const server = await serve({ name: 'named-handler', dns: ['handler.cos.internal'], ips: [] });
    const named = client(server, { tls: watch({ caFile: pki.caFile, serverName: 'handler.cos.internal' }) });
    expect((await named.handleCommand(request)).events).toHaveLength(1);

    const failures: Error[] = [];
    const wrongName = client(server, {
      tls: watch({ caFile: pki.caFile, serverName: 'other.cos.internal' }),
      onTlsFailure: (error) => failures.push(error),
    });
    await expect(wrongName.handleCommand(request)).rejects.toThrow(/Hostname\/IP does not match certificate's altnames/);
    expect(failures.map((f) => (f as NodeJS.ErrnoException).code)).toEqual(['ERR_TLS_CERT_ALTNAME_INVALID']);
    // dialled by IP without a server name: the certificate must name the IP, and this one does not
    const byIp = client(server, { tls: watch({ caFile: pki.caFile }) });
    await expect(byIp.handleCommand(request)).rejects.toThrow(/IP: 127.0.0.1 is not in the cert's list/);
    // an IP as the server name is checked against the certificate too (it cannot be sent as SNI)
    const ipName = client(server, { tls: watch({ caFile: pki.caFile, serverName: '10.1.2.3' }) });
    await expect(ipName.handleCommand(request)).rejects.toBeInstanceOf(HandlerUnavailableError);
    expect(server.calls).toHaveLength(1);
  });

  it('presents the client certificate to a handler that requires one (mTLS); without one the handshake is refused', async () => {
    const server = await serve({ mtls: true });
    const cert = pki.issue({ name: 'cos-client', usage: 'client' });
    const writeSide = client(server, { tls: watch({ caFile: pki.caFile, certFile: cert.certFile, keyFile: cert.keyFile }) });
    expect((await writeSide.handleCommand(request)).events).toHaveLength(1);
    expect(server.calls.map((call) => call.clientSerial)).toEqual([serialOf(cert.cert)]);

    const failures: Error[] = [];
    const anonymous = client(server, { tls: watch({ caFile: pki.caFile }), onTlsFailure: (error) => failures.push(error) });
    await expect(anonymous.handleCommand(request)).rejects.toBeInstanceOf(HandlerUnavailableError);
    expect(failures).toHaveLength(1);
    expect((failures[0] as NodeJS.ErrnoException).code).toMatch(/^ERR_SSL_/);
    expect(server.calls).toHaveLength(1);

    const strangerCert = stranger.issue({ name: 'intruder', usage: 'client' });
    const intruder = client(server, { tls: watch({ caFile: pki.caFile, certFile: strangerCert.certFile, keyFile: strangerCert.keyFile }) });
    await expect(intruder.handleCommand(request)).rejects.toBeInstanceOf(HandlerUnavailableError);
    expect(server.calls).toHaveLength(1);
  });

  it('takes a rotated client certificate for the next call, on a new connection, without a new client', async () => {
    const server = await serve({ mtls: true });
    const first = pki.issue({ name: 'rotated-client', usage: 'client' });
    const changes: (string | undefined)[] = [];
    const tls = watch({ caFile: pki.caFile, certFile: first.certFile, keyFile: first.keyFile, onChange: (s) => changes.push(s.certSerial) });
    const writeSide = client(server, { tls });
    await writeSide.handleCommand(request);
    await writeSide.handleCommand(request);

    const second = pki.issue({ name: 'rotated-client', usage: 'client' });
    expect(await tls.refresh()).toBe(true);
    expect(changes).toEqual([serialOf(second.cert)]);
    await writeSide.handleCommand(request);
    expect(server.calls.map((call) => [call.clientSerial, call.connection])).toEqual([
      [serialOf(first.cert), 1],
      [serialOf(first.cert), 1],
      [serialOf(second.cert), 2],
    ]);
    // the old connection was closed once its calls were done
    await pollUntil(() => server.handshakes() === 2, 2000, 'two handshakes');
  });

  it('lets a call in flight finish on the old connection when the files rotate', async () => {
    let release: () => void = () => {};
    const released = new Promise<void>((resolve) => (release = resolve));
    const issued = pki.issue({ name: 'slow-handler', usage: 'server' });
    // the first call is answered only once released
    const server = await startSecureGrpcServer({
      cert: issued.cert,
      key: issued.key,
      clientCa: pki.ca,
      respond,
      hold: (index) => (index === 0 ? released : Promise.resolve()),
    });
    cleanups.push(() => server.close());
    const first = pki.issue({ name: 'inflight-client', usage: 'client' });
    const tls = watch({ caFile: pki.caFile, certFile: first.certFile, keyFile: first.keyFile });
    const readSide = createReadSideClient({ host: '127.0.0.1', port: server.port, useTls: true, tls, timeoutMs: 5000 });
    cleanups.push(() => readSide.close());
    const slow = readSide.handleReadSide(create(HandleReadSideRequestSchema, {}));
    await pollUntil(() => server.calls.length === 1, 2000, 'the first call arrived');
    const second = pki.issue({ name: 'inflight-client', usage: 'client' });
    expect(await tls.refresh()).toBe(true);
    expect((await readSide.handleReadSide(create(HandleReadSideRequestSchema, {}))).successful).toBe(true);
    release();
    expect((await slow).successful).toBe(true);
    expect(server.calls.map((call) => [call.clientSerial, call.connection])).toEqual([
      [serialOf(first.cert), 1],
      [serialOf(second.cert), 2],
    ]);
  });

  it('refuses missing or broken files at start with a ConfigError naming the setting, and keeps the old files when new ones are broken', async () => {
    expect(() => watchClientTls({ caFile: join(pki.dir, 'absent.crt'), label: 'COS_WRITE_SIDE_TLS_*' })).toThrow(ConfigError);
    expect(() => watchClientTls({ caFile: join(pki.dir, 'absent.crt'), label: 'COS_WRITE_SIDE_TLS_*' })).toThrow(
      /COS_WRITE_SIDE_TLS_\*: cannot use .*absent\.crt/,
    );

    const server = await serve({ mtls: true });
    const cert = pki.issue({ name: 'broken-later', usage: 'client' });
    const errors: unknown[] = [];
    const tls = watch({ caFile: pki.caFile, certFile: cert.certFile, keyFile: cert.keyFile, onError: (e) => errors.push(e) });
    const writeSide = client(server, { tls });
    writeFileSync(cert.certFile, 'not a certificate');
    expect(await tls.refresh()).toBe(false);
    expect(errors).toHaveLength(1);
    // a key of another certificate: refused too
    copyFileSync(pki.issue({ name: 'another', usage: 'client' }).keyFile, cert.keyFile);
    expect(await tls.refresh()).toBe(false);
    expect((await writeSide.handleCommand(request)).events).toHaveLength(1);
    expect(server.calls.map((call) => call.clientSerial)).toEqual([serialOf(cert.cert)]);
  });
});

function serialOf(pem: string): string {
  return new X509Certificate(pem).serialNumber;
}

import { copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, createServer, type TLSSocket } from 'node:tls';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '@chiefofstate/core';
import { createTestPki } from '@chiefofstate/testing';
import { certificateIdentities, watchTlsFiles } from './tls-material.js';

const pki = createTestPki();
afterAll(() => pki.remove());

describe('watchTlsFiles', () => {
  it('reads certificate, key and CA, and takes a rotated pair once both files changed', async () => {
    const first = pki.issue({ name: 'rotating' });
    const errors: unknown[] = [];
    const files = watchTlsFiles({ paths: { certFile: first.certFile, keyFile: first.keyFile, caFile: pki.caFile }, intervalMs: 0, onError: (e) => errors.push(e) });
    expect(files.current().cert?.toString()).toBe(first.cert);
    expect(files.current().ca?.toString()).toBe(pki.ca);

    // a new certificate whose key is not written yet: refused, the old pair stays
    const other = pki.issue({ name: 'other' });
    copyFileSync(other.certFile, first.certFile);
    expect(await files.refresh()).toBe(false);
    expect(errors).toHaveLength(1);
    expect(files.current().cert?.toString()).toBe(first.cert);

    copyFileSync(other.keyFile, first.keyFile);
    expect(await files.refresh()).toBe(true);
    expect(files.current().cert?.toString()).toBe(other.cert);
    expect(await files.refresh()).toBe(false);
    files.close();
  });

  it('refuses a missing file, a file that is not PEM and a certificate without its key at start', () => {
    expect(() => watchTlsFiles({ paths: { caFile: join(pki.dir, 'absent.crt') } })).toThrow(ConfigError);
    const junk = join(pki.dir, 'junk.crt');
    writeFileSync(junk, 'not a certificate');
    expect(() => watchTlsFiles({ paths: { caFile: junk } })).toThrow(/no PEM block/);
    expect(() => watchTlsFiles({ paths: { certFile: pki.caFile } })).toThrow(TypeError);
  });

  it('polls on its interval', async () => {
    const cert = pki.issue({ name: 'polled' });
    const changed: string[] = [];
    const files = watchTlsFiles({ paths: { certFile: cert.certFile, keyFile: cert.keyFile }, intervalMs: 20, onChange: (m) => changed.push(String(m.cert)) });
    const next = pki.issue({ name: 'polled' });
    const until = Date.now() + 5_000;
    while (changed.length === 0 && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 20));
    files.close();
    expect(changed).toEqual([next.cert]);
  });
});

describe('certificateIdentities', () => {
  it('names the CN, DNS and URI alternative names of a verified client certificate', async () => {
    const server = pki.issue({ name: 'server' });
    const client = pki.issue({ name: 'app-client', dns: ['app.default.svc'], ips: [], uris: ['spiffe://cluster.local/ns/default/sa/app'], usage: 'client' });
    const seen = new Promise<string[]>((resolve) => {
      const listener = createServer({ cert: server.cert, key: server.key, ca: pki.ca, requestCert: true, rejectUnauthorized: true }, (socket: TLSSocket) => {
        resolve(certificateIdentities(socket.getPeerCertificate()));
        socket.end();
        listener.close();
      }).listen(0, '127.0.0.1', () => {
        const address = listener.address() as { port: number };
        const socket = connect({ host: '127.0.0.1', port: address.port, ca: pki.ca, cert: client.cert, key: client.key, servername: 'localhost' });
        socket.on('error', () => undefined);
        socket.on('end', () => socket.destroy());
      });
    });
    expect(await seen).toEqual(['app-client', 'app.default.svc', 'spiffe://cluster.local/ns/default/sa/app']);
    expect(certificateIdentities(undefined)).toEqual([]);
  });
});

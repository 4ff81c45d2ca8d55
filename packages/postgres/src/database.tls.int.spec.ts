import { writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { sql } from 'kysely';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { StoreError } from '@chiefofstate/core';
import {
  findPostgresBinDir,
  pollUntil,
  startOwnTlsPostgres,
  type IssuedCertificate,
  type OwnPostgres,
  type OwnTlsPostgres,
  type TestPki,
} from '@chiefofstate/testing';
import { createDatabase, type Database, type DatabaseStatus, type PostgresConnectionOptions } from './database.js';
import type { PostgresTlsOptions } from './postgres-tls.js';

/*
 * TLS to a PostgreSQL this file starts with ssl=on, `hostssl ... cert` (a client certificate
 * whose CN is the user) and `hostnossl ... reject`; certificates from a throwaway CA. It also
 * listens on 127.0.0.2, an address its certificate does not name (a wrong host for verify-full).
 */

const runnable = process.env['CI'] === 'true' || findPostgresBinDir() !== undefined;

interface SslRow {
  ssl: boolean;
  client_dn: string | null;
  client_serial: string | null;
}

describe.skipIf(!runnable)('database over TLS', () => {
  let own: OwnTlsPostgres;
  let pki: TestPki;
  let stranger: TestPki;
  let client: IssuedCertificate;
  let server: OwnPostgres;
  const opened: Database[] = [];
  const statuses: DatabaseStatus[] = [];
  const uncaught: unknown[] = [];
  const onUncaught = (error: unknown) => uncaught.push(error);

  beforeAll(async () => {
    own = await startOwnTlsPostgres({ pkiPrefix: 'cos-pg-tls-', database: 'tls', settings: { listen_addresses: '127.0.0.1,127.0.0.2' } });
    ({ pki, stranger, client, server } = own);
    process.on('uncaughtException', onUncaught);
  }, 120_000);
  afterAll(async () => {
    process.off('uncaughtException', onUncaught);
    await own?.dispose();
  });
  afterEach(async () => {
    for (const database of opened.splice(0)) await database.close().catch(() => {});
    statuses.length = 0;
    expect(uncaught).toEqual([]);
  });

  async function open(tls: PostgresTlsOptions | undefined, overrides: Partial<PostgresConnectionOptions> = {}): Promise<Database> {
    const database = await createDatabase({
      kind: 'postgres',
      host: '127.0.0.1',
      port: server.port,
      user: server.user,
      password: 'never-shown-pw',
      database: server.database,
      schema: 'tls',
      applicationName: 'cos-tls-spec',
      poolMax: 2,
      connectTimeoutMs: 3000,
      onStatus: (status) => statuses.push(status),
      ...(tls ? { tls } : {}),
      ...overrides,
    });
    opened.push(database);
    return database;
  }

  // the files stay at these paths when rotated
  const clientCert = () => ({ certFile: client.certFile, keyFile: client.keyFile });

  async function sslOfConnection(database: Database): Promise<SslRow> {
    const { rows } = await sql<SslRow>`
      select ssl, client_dn, client_serial::text as client_serial from pg_stat_ssl where pid = pg_backend_pid()`.execute(database.kysely);
    return rows[0]!;
  }

  it('connects with verify-full and a client certificate: every connection (pool, LISTEN) is encrypted', async () => {
    const database = await open({ mode: 'verify-full', rootCertFile: pki.caFile, ...clientCert() });
    expect(await sslOfConnection(database)).toMatchObject({ ssl: true, client_dn: '/CN=postgres' });
    const heard: string[] = [];
    await database.listen('tls_channel', (payload) => heard.push(payload));
    await sql`select pg_notify('tls_channel', 'over tls')`.execute(database.kysely);
    await pollUntil(() => heard.includes('over tls'), 5000, 'the notification over the TLS LISTEN connection');
  });

  it('is refused in plaintext by a server that demands TLS, with the server\'s reason', async () => {
    const error = await open(undefined).catch((caught: unknown) => caught);
    expect(String(error)).toMatch(/pg_hba\.conf rejects connection .*no encryption/);
    expect(String(error)).not.toContain('never-shown-pw');
  });

  it('refuses a server whose certificate does not name the host with verify-full; verify-ca accepts it', async () => {
    const error = await open({ mode: 'verify-full', rootCertFile: pki.caFile, ...clientCert() }, { host: '127.0.0.2' }).catch(
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(StoreError);
    expect((error as Error).message).toMatch(/COS_POSTGRES_SSL_MODE=verify-full.*IP: 127\.0\.0\.2.*does not name COS_POSTGRES_HOST/);
    expect((error as Error).message).not.toContain('never-shown-pw');

    const database = await open({ mode: 'verify-ca', rootCertFile: pki.caFile, ...clientCert() }, { host: '127.0.0.2' });
    expect((await sslOfConnection(database)).ssl).toBe(true);
  });

  it('refuses a server certificate from another CA (verify-full, verify-ca, and require given a root certificate)', async () => {
    for (const mode of ['verify-full', 'verify-ca', 'require'] as const) {
      const error = await open({ mode, rootCertFile: stranger.caFile, ...clientCert() }).catch((caught: unknown) => caught);
      expect(error, mode).toBeInstanceOf(StoreError);
      expect((error as Error).message).toContain(`COS_POSTGRES_SSL_MODE=${mode}`);
      expect((error as Error).message).toMatch(/certificate does not verify against COS_POSTGRES_SSL_ROOT_CERT/);
    }
  });

  it('says so when the server has TLS off', async () => {
    // what PostgreSQL with ssl=off answers to the SSLRequest: 'N'
    const plain = createServer((socket) => socket.once('data', () => socket.end('N')));
    await new Promise<void>((resolve) => plain.listen(0, '127.0.0.1', resolve));
    try {
      const port = (plain.address() as AddressInfo).port;
      const error = await open({ mode: 'require' }, { port }).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(StoreError);
      expect((error as Error).message).toMatch(/COS_POSTGRES_SSL_MODE=require\): The server does not support SSL connections \(the server has TLS off/);
    } finally {
      plain.close();
    }
  });

  it('require without a root certificate encrypts without checking the server', async () => {
    const database = await open({ mode: 'require', ...clientCert() }, { host: '127.0.0.2' });
    expect(await sslOfConnection(database)).toMatchObject({ ssl: true, client_dn: '/CN=postgres' });
  });

  it('is refused by the server without a client certificate it trusts', async () => {
    const strangerClient = stranger.issue({ name: 'postgres', dns: [], ips: [], usage: 'client' });
    for (const certificate of [{}, { certFile: strangerClient.certFile, keyFile: strangerClient.keyFile }]) {
      const error = await open({ mode: 'verify-full', rootCertFile: pki.caFile, ...certificate }).catch((caught: unknown) => caught);
      // the server's words, or the TLS alert it sent
      expect(String(error)).toMatch(/requires a valid client certificate|refused the client certificate COS_POSTGRES_SSL_CERT/);
    }
  });

  it('a new connection uses a rotated client certificate, without reopening the database; a broken rotation keeps the last good one', async () => {
    const database = await open({ mode: 'verify-full', rootCertFile: pki.caFile, ...clientCert(), reloadIntervalMs: 50 });
    const before = await sslOfConnection(database);
    const rotated = pki.issue({ name: 'postgres', dns: [], ips: [], usage: 'client' });
    expect(rotated.certFile).toBe(client.certFile);
    await pollUntil(() => statuses.some((status) => status.what === 'tls' && status.up), 5000, 'the rotated files to be taken');
    // open connections keep their handshake: cut them, the pool connects again
    await server.terminateBackends({ applicationName: 'cos-tls-spec' });
    let after: SslRow | undefined;
    await pollUntil(
      async () => {
        after = await sslOfConnection(database).catch(() => undefined);
        return after !== undefined;
      },
      10_000,
      'a new connection',
    );
    expect(after).toMatchObject({ ssl: true, client_dn: '/CN=postgres' });
    expect(after!.client_serial).not.toBe(before.client_serial);

    // a key that does not fit: refused, reported, the rotated certificate stays in use
    writeFileSync(rotated.keyFile, pki.issue({ name: 'unrelated', usage: 'client' }).key);
    await pollUntil(() => statuses.some((status) => status.what === 'tls' && !status.up), 5000, 'the broken files to be refused');
    await server.terminateBackends({ applicationName: 'cos-tls-spec' });
    await pollUntil(async () => (await sslOfConnection(database).catch(() => undefined))?.client_serial === after!.client_serial, 10_000, 'a new connection with the last good certificate');
    writeFileSync(rotated.keyFile, rotated.key);
  });
});

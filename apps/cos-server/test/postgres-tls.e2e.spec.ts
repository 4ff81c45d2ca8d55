// cos-server on a PostgreSQL that accepts TCP over TLS only, authenticating COS by its client
// certificate (`hostssl ... cert`, `hostnossl ... reject`), certificates from a throwaway CA.
// The built process, a stock grpc-js write handler and client, the server this file starts.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  findPostgresBinDir,
  pollUntil,
  startOwnTlsPostgres,
  type IssuedCertificate,
  type OwnPostgres,
  type OwnTlsPostgres,
  type TestPki,
} from '@chiefofstate/testing';
import { command, startCos, type CosFixture, type CosTestStore } from './support/cos-fixture.js';
import { freePort, startCosServerProcess, startTestHandler, type RunningProcess } from './support/processes.js';

// Required in CI; elsewhere skipped where PostgreSQL's binaries are missing.
const available = process.env['CI'] === 'true' || findPostgresBinDir() !== undefined;

/** never accepted by the server (cert authentication), so it must never show anywhere */
const PASSWORD = 'pg-password-must-not-show';

interface ConnectionSsl {
  application_name: string;
  ssl: boolean;
  client_dn: string | null;
  client_serial: string | null;
}

describe.skipIf(!available)('cos-server on PostgreSQL over TLS with a client certificate', () => {
  let own: OwnTlsPostgres;
  let pki: TestPki;
  let stranger: TestPki;
  let client: IssuedCertificate;
  let postgres: OwnPostgres;
  let handler: RunningProcess & { port: number };
  const started: CosFixture[] = [];

  beforeAll(async () => {
    own = await startOwnTlsPostgres({ pkiPrefix: 'cos-e2e-pg-tls-', database: 'cos_tls' });
    ({ pki, stranger, client, server: postgres } = own);
    handler = await startTestHandler();
  }, 120_000);

  afterAll(async () => {
    for (const cos of started) await cos.dispose().catch(() => {});
    await handler?.kill('SIGKILL');
    await own?.dispose();
  });

  const tlsEnv = (overrides: Record<string, string> = {}): Record<string, string> => ({
    COS_POSTGRES_PASSWORD: PASSWORD,
    COS_POSTGRES_SSL_MODE: 'verify-full',
    COS_POSTGRES_SSL_ROOT_CERT: pki.caFile,
    COS_POSTGRES_SSL_CERT: client.certFile,
    COS_POSTGRES_SSL_KEY: client.keyFile,
    ...overrides,
  });

  const handlerEnv = (): Record<string, string> => ({
    WRITE_SIDE_HANDLER_SERVICE_HOST: '127.0.0.1',
    WRITE_SIDE_HANDLER_SERVICE_PORT: String(handler.port),
  });

  // the test's own look at the tables goes through the Unix socket, which the server trusts
  const store = (env: Record<string, string>): CosTestStore => ({
    cosEnv: (schema) => ({ ...postgres.cosEnv(schema), ...env }),
    connection: () => ({ host: postgres.dir, port: postgres.port, user: postgres.user, database: postgres.database }),
  });

  async function connectionsOf(applicationPrefix: string): Promise<ConnectionSsl[]> {
    const admin = new pg.Client({ host: postgres.dir, port: postgres.port, user: postgres.user, database: postgres.database });
    await admin.connect();
    try {
      const { rows } = await admin.query<ConnectionSsl>(
        `select a.application_name, s.ssl, s.client_dn, s.client_serial::text as client_serial
           from pg_stat_activity a join pg_stat_ssl s using (pid)
          where a.backend_type = 'client backend' and a.application_name like $1`,
        [`${applicationPrefix}%`],
      );
      return rows;
    } finally {
      await admin.end();
    }
  }

  /** a cos-server that must fail to start: its exit code and everything it wrote */
  async function failedStart(env: Record<string, string>): Promise<{ code: number | NodeJS.Signals; output: string }> {
    const server = startCosServerProcess({
      COS_PORT: String(await freePort()),
      COS_METRICS_PORT: String(await freePort()),
      COS_ADDRESS: '127.0.0.1',
      ...handlerEnv(),
      ...postgres.cosEnv('refused'),
      ...env,
    });
    const code = await Promise.race([
      server.exited,
      new Promise<'running'>((resolve) => setTimeout(() => resolve('running'), 30_000)),
    ]);
    return { code: code === 'running' ? await server.kill('SIGKILL') : code, output: server.output() };
  }

  it('processes a command with verify-full and a client certificate, every connection encrypted, then uses a rotated certificate without a restart', async () => {
    const cos = await startCos(
      { ...handlerEnv(), COS_SERVICE_NAME: 'cos-tls-e2e', COS_TLS_RELOAD_INTERVAL: '0.2' },
      undefined,
      undefined,
      store(tlsEnv()),
    );
    started.push(cos);
    const first = await cos.send('tls-account', command('Emit', { events: ['opened'] }));
    expect(first.response.meta?.revisionNumber).toBe(1);
    expect(await cos.journal('tls-account')).toHaveLength(1);

    const before = await connectionsOf('cos-tls-e2e');
    // the store's pool, the lease pool, LISTEN
    expect(before.length).toBeGreaterThanOrEqual(2);
    for (const connection of before) expect(connection).toMatchObject({ ssl: true, client_dn: '/CN=postgres' });
    const oldSerial = before[0]!.client_serial;

    pki.issue({ name: 'postgres', dns: [], ips: [], usage: 'client' });
    // each pool takes the new files on its own watch: wait for both, or one reconnects with the old
    await cos.server.waitFor(/"pool":"store"[^\n]*PostgreSQL TLS files changed: new connections use them/, 10_000);
    await cos.server.waitFor(/"pool":"leases"[^\n]*PostgreSQL TLS files changed: new connections use them/, 10_000);
    // connections made before the rotation keep their handshake: cut them, COS connects again
    await postgres.terminateBackends();
    await pollUntil(
      async () => {
        const reply = await cos.send('tls-account', command('Emit', { events: ['rotated'] })).catch(() => undefined);
        return reply?.response.meta?.revisionNumber !== undefined;
      },
      20_000,
      'a command after the rotation',
      200,
    );
    const after = await connectionsOf('cos-tls-e2e');
    expect(after.length).toBeGreaterThanOrEqual(1);
    for (const connection of after) {
      expect(connection).toMatchObject({ ssl: true, client_dn: '/CN=postgres' });
      expect(connection.client_serial).not.toBe(oldSerial);
    }
    expect(cos.server.output()).not.toContain(PASSWORD);
  }, 90_000);

  it('refuses to start, with a clear reason and no password, against an untrusted or plaintext-refusing server and for allow/prefer', async () => {
    const untrusted = await failedStart(tlsEnv({ COS_POSTGRES_SSL_ROOT_CERT: stranger.caFile }));
    expect(untrusted.code).toBe(1);
    expect(untrusted.output).toMatch(/cannot open a TLS connection to PostgreSQL \(COS_POSTGRES_SSL_MODE=verify-full\): .*certificate/);

    const plaintext = await failedStart({ COS_POSTGRES_PASSWORD: PASSWORD });
    expect(plaintext.code).toBe(1);
    expect(plaintext.output).toMatch(/pg_hba\.conf rejects connection .*no encryption/);

    const prefer = await failedStart(tlsEnv({ COS_POSTGRES_SSL_MODE: 'prefer' }));
    expect(prefer.code).toBe(2);
    expect(prefer.output).toMatch(/COS_POSTGRES_SSL_MODE="prefer": not supported/);

    for (const { output } of [untrusted, plaintext, prefer]) expect(output).not.toContain(PASSWORD);
  }, 120_000);
});

import { startOwnPostgres, type OwnPostgres, type OwnPostgresOptions } from './own-postgres.js';
import { createTestPki, type IssuedCertificate, type TestPki } from './test-pki.js';

export interface OwnTlsPostgresOptions extends Pick<OwnPostgresOptions, 'database' | 'settings'> {
  /** prefix of the throwaway CA's temp dir */
  readonly pkiPrefix: string;
}

/**
 * A PostgreSQL of the test's own that accepts TCP over TLS only, authenticating clients by
 * certificate (`hostssl ... cert`: the CN is the user, `hostnossl ... reject`), with the
 * throwaway CA that issued the certificates.
 */
export interface OwnTlsPostgres {
  readonly server: OwnPostgres;
  /** the CA the server trusts; its certificate names db.cos.test and 127.0.0.1 */
  readonly pki: TestPki;
  /** a CA the server does not trust */
  readonly stranger: TestPki;
  /** a client certificate of the user `postgres`, from `pki` */
  readonly client: IssuedCertificate;
  /** stops the server and removes the CAs' files */
  dispose(): Promise<void>;
}

export async function startOwnTlsPostgres(options: OwnTlsPostgresOptions): Promise<OwnTlsPostgres> {
  const pki = createTestPki(options.pkiPrefix);
  const stranger = pki.stranger();
  const removeCas = () => {
    pki.remove();
    stranger.remove();
  };
  try {
    const serverCert = pki.issue({ name: 'db-server', dns: ['db.cos.test'], ips: ['127.0.0.1'], usage: 'server' });
    const client = pki.issue({ name: 'postgres', dns: [], ips: [], usage: 'client' });
    const server = await startOwnPostgres({
      database: options.database,
      settings: options.settings,
      tls: { certFile: serverCert.certFile, keyFile: serverCert.keyFile, caFile: pki.caFile, clientAuth: 'cert' },
    });
    return {
      server,
      pki,
      stranger,
      client,
      async dispose() {
        await server.dispose();
        removeCas();
      },
    };
  } catch (error) {
    removeCas();
    throw error;
  }
}

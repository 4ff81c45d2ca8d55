import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A certificate and its key, as files and as PEM. */
export interface IssuedCertificate {
  readonly certFile: string;
  readonly keyFile: string;
  readonly cert: string;
  readonly key: string;
}

export interface IssueOptions {
  /** subject CN; also the file names' stem */
  readonly name: string;
  /** DNS subject alternative names; default ['localhost'] */
  readonly dns?: readonly string[];
  /** IP subject alternative names; default ['127.0.0.1'] */
  readonly ips?: readonly string[];
  /** URI subject alternative names (e.g. a SPIFFE id) */
  readonly uris?: readonly string[];
  /** extended key usage; default both */
  readonly usage?: 'server' | 'client' | 'both';
  /** validity in days; default 1 */
  readonly days?: number;
}

/** A throwaway certificate authority in a temporary directory. */
export interface TestPki {
  readonly dir: string;
  /** the CA certificate's file and PEM */
  readonly caFile: string;
  readonly ca: string;
  /** a new key and certificate signed by this CA, written to `<dir>/<name>.crt|.key` */
  issue(options: IssueOptions): IssuedCertificate;
  /** another CA, unrelated to this one: its certificates must be refused */
  readonly stranger: () => TestPki;
  remove(): void;
}

/**
 * Creates a CA with the openssl CLI (EC P-256, valid one day), for tests of TLS and mTLS with
 * real certificates. Issuing the same name again replaces the files: a certificate rotation.
 */
export function createTestPki(prefix = 'cos-pki-'): TestPki {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const caKey = join(dir, 'ca.key');
  const caFile = join(dir, 'ca.crt');
  openssl([
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', caKey, '-out', caFile, '-days', '1', '-subj', `/CN=${prefix}test-ca`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  let serial = 1;
  return {
    dir,
    caFile,
    ca: readFileSync(caFile, 'utf8'),
    issue(options) {
      const stem = join(dir, options.name.replace(/[^A-Za-z0-9_.-]/g, '_'));
      const keyFile = `${stem}.key`;
      const certFile = `${stem}.crt`;
      const csr = `${stem}.csr`;
      const ext = `${stem}.ext`;
      const san = [
        ...(options.dns ?? ['localhost']).map((name) => `DNS:${name}`),
        ...(options.ips ?? ['127.0.0.1']).map((ip) => `IP:${ip}`),
        ...(options.uris ?? []).map((uri) => `URI:${uri}`),
      ];
      const usage = options.usage ?? 'both';
      const eku = usage === 'server' ? 'serverAuth' : usage === 'client' ? 'clientAuth' : 'serverAuth,clientAuth';
      writeFileSync(
        ext,
        [
          'basicConstraints=CA:FALSE',
          'keyUsage=critical,digitalSignature,keyEncipherment',
          `extendedKeyUsage=${eku}`,
          ...(san.length > 0 ? [`subjectAltName=${san.join(',')}`] : []),
        ].join('\n'),
      );
      // key and certificate are written to new files, then renamed over the old ones, so a
      // reader never sees a half-written file
      openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${keyFile}.new`, '-out', csr, '-subj', `/CN=${options.name}`]);
      openssl([
        'x509', '-req', '-in', csr, '-CA', caFile, '-CAkey', caKey, '-set_serial', String(serial++),
        '-days', String(options.days ?? 1), '-extfile', ext, '-out', `${certFile}.new`,
      ]);
      execFileSync('mv', ['-f', `${keyFile}.new`, keyFile]);
      execFileSync('mv', ['-f', `${certFile}.new`, certFile]);
      return { certFile, keyFile, cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8') };
    },
    stranger: () => createTestPki(`${prefix}stranger-`),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

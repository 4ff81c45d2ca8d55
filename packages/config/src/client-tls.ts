import { resolve } from 'node:path';
import type { EnvReader } from './env-reader.js';
import type { ClientTlsConfig } from './types.js';
import { host, secondsOrNeverAsMs, text } from './values.js';

/**
 * The TLS settings of COS's outbound clients: the write handler (COS_WRITE_SIDE_TLS_*), the
 * peers (COS_CLUSTER_TLS_* with the listener's COS_TLS_CERT_FILE/KEY), and the read sides'
 * shared reload interval. Whether the files can be read is checked when the clients start
 * (@chiefofstate/tls reads them at once); here, which settings go together.
 */

export const DEFAULT_TLS_RELOAD_INTERVAL_MS = 10_000;

/** COS_TLS_RELOAD_INTERVAL in ms; 0: never. */
export function readTlsReloadInterval(reader: EnvReader): number {
  return reader.readOr(secondsOrNeverAsMs, 'COS_TLS_RELOAD_INTERVAL', DEFAULT_TLS_RELOAD_INTERVAL_MS);
}

const WRITE_SIDE = {
  caFile: 'COS_WRITE_SIDE_TLS_CA_FILE',
  certFile: 'COS_WRITE_SIDE_TLS_CERT_FILE',
  keyFile: 'COS_WRITE_SIDE_TLS_KEY_FILE',
  serverName: 'COS_WRITE_SIDE_TLS_SERVER_NAME',
} as const;

/** COS_WRITE_SIDE_TLS_*: undefined without COS_WRITE_SIDE_USE_TLS, where any of them is a mistake. */
export function readWriteSideTls(reader: EnvReader, cwd: string, useTls: boolean, reloadIntervalMs: number): ClientTlsConfig | undefined {
  const path = (name: string) => pathOf(reader, cwd, name);
  const tls: ClientTlsConfig = {
    caFile: path(WRITE_SIDE.caFile),
    certFile: path(WRITE_SIDE.certFile),
    keyFile: path(WRITE_SIDE.keyFile),
    serverName: reader.read(host, WRITE_SIDE.serverName),
    reloadIntervalMs,
  };
  checkPair(reader, WRITE_SIDE.certFile, WRITE_SIDE.keyFile);
  if (!useTls) {
    for (const name of Object.values(WRITE_SIDE)) {
      if (reader.isSet(name)) {
        reader.report.problem(`${name} is set but COS_WRITE_SIDE_USE_TLS is not true: expected COS_WRITE_SIDE_USE_TLS=true to use it, or ${name} unset`);
      }
    }
    return undefined;
  }
  return tls;
}

/**
 * How this replica dials its peers: over TLS when its listener has TLS (COS_TLS_CERT_FILE and
 * COS_TLS_KEY_FILE, whose pair server-tls checks), presenting that certificate, trusting
 * COS_CLUSTER_TLS_CA_FILE or else COS_TLS_CLIENT_CA_FILE; undefined: plaintext.
 */
export function readPeerTls(reader: EnvReader, cwd: string, reloadIntervalMs: number): ClientTlsConfig | undefined {
  const path = (name: string) => pathOf(reader, cwd, name);
  const certFile = path('COS_TLS_CERT_FILE');
  const keyFile = path('COS_TLS_KEY_FILE');
  const caFile = path('COS_CLUSTER_TLS_CA_FILE') ?? path('COS_TLS_CLIENT_CA_FILE');
  const serverName = reader.read(host, 'COS_CLUSTER_TLS_SERVER_NAME');
  if (certFile === undefined || keyFile === undefined) {
    for (const name of ['COS_CLUSTER_TLS_CA_FILE', 'COS_CLUSTER_TLS_SERVER_NAME']) {
      if (reader.isSet(name)) {
        reader.report.problem(
          `${name} is set but COS_TLS_CERT_FILE and COS_TLS_KEY_FILE are not: expected them set (peers are dialled over TLS only when this replica serves TLS), or ${name} unset`,
        );
      }
    }
    return undefined;
  }
  return { caFile, certFile, keyFile, serverName, reloadIntervalMs };
}

/** The file a variable names, resolved against the working directory. */
function pathOf(reader: EnvReader, cwd: string, name: string): string | undefined {
  const value = reader.read(text, name);
  return value === undefined ? undefined : resolve(cwd, value);
}

/** A client certificate needs its key, and a key its certificate. */
export function checkPair(reader: EnvReader, certName: string, keyName: string): void {
  const cert = reader.isSet(certName);
  if (cert !== reader.isSet(keyName)) {
    const [set, unset] = cert ? [certName, keyName] : [keyName, certName];
    reader.report.problem(`${set} is set without ${unset}: expected both (a client certificate and its key) or neither`);
  }
}

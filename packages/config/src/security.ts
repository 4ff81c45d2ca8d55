import { resolve } from 'node:path';
import type { EnvReader } from './env-reader.js';
import type { CallerAuthConfig, ListenerTlsConfig, SecurityConfig, ServiceCredentialsConfig } from './types.js';
import { clientAuthMode, identityNames, text } from './values.js';

/**
 * The gRPC listener's TLS, caller authentication and the metrics token (COS_TLS_*, COS_AUTH_*,
 * COS_ADMIN_*, COS_CLUSTER_PEER_NAMES, COS_METRICS_TOKEN_FILE). Paths are resolved against
 * `cwd`; the files themselves are read (and checked) when the server starts. `reloadIntervalMs`
 * is COS_TLS_RELOAD_INTERVAL (readTlsReloadInterval).
 */
export function readSecurity(reader: EnvReader, cwd: string, readSidesEnabled: boolean, reloadIntervalMs: number): SecurityConfig {
  const file = (name: string) => {
    const path = reader.read(text, name);
    return path === undefined ? undefined : resolve(cwd, path);
  };
  const tls = readListenerTls(reader, file);
  const clientCa = tls?.clientCaFile !== undefined;
  const names = (name: string) => {
    const found = reader.readOr(identityNames, name, []);
    if (found.length > 0 && !clientCa) {
      reader.report.problem(`${name} is set but COS_TLS_CLIENT_CA_FILE is not: client certificates are only verified with a client CA`);
    }
    return found;
  };
  const credentials = (tokensName: string, namesName: string): ServiceCredentialsConfig | undefined => {
    const tokensFile = file(tokensName);
    const clientNames = names(namesName);
    return tokensFile === undefined && clientNames.length === 0 ? undefined : { tokensFile, clientNames };
  };
  const api = credentials('COS_AUTH_TOKENS_FILE', 'COS_AUTH_CLIENT_NAMES');
  const adminSet = credentials('COS_ADMIN_TOKENS_FILE', 'COS_ADMIN_CLIENT_NAMES');
  const on = api !== undefined || adminSet !== undefined;
  const admin = adminSet ?? (on ? { tokensFile: undefined, clientNames: [] } : undefined);
  const auth: CallerAuthConfig = { api, admin, peerNames: names('COS_CLUSTER_PEER_NAMES') };

  if (on && adminSet === undefined && readSidesEnabled) {
    reader.report.warn(
      'caller authentication is on and neither COS_ADMIN_TOKENS_FILE nor COS_ADMIN_CLIENT_NAMES is set: ReadSideManagerService refuses every call',
    );
  }
  if ((api?.tokensFile !== undefined || adminSet?.tokensFile !== undefined) && tls === undefined) {
    reader.report.warn('bearer tokens are checked but COS_TLS_CERT_FILE is unset: tokens travel in cleartext');
  }
  return { reloadIntervalMs, tls, auth, metricsTokenFile: file('COS_METRICS_TOKEN_FILE') };
}

function readListenerTls(reader: EnvReader, file: (name: string) => string | undefined): ListenerTlsConfig | undefined {
  const certFile = file('COS_TLS_CERT_FILE');
  const keyFile = file('COS_TLS_KEY_FILE');
  const clientCaFile = file('COS_TLS_CLIENT_CA_FILE');
  const clientAuth = reader.read(clientAuthMode, 'COS_TLS_CLIENT_AUTH');
  if ((certFile === undefined) !== (keyFile === undefined)) {
    const [set, unset] = certFile === undefined ? ['COS_TLS_KEY_FILE', 'COS_TLS_CERT_FILE'] : ['COS_TLS_CERT_FILE', 'COS_TLS_KEY_FILE'];
    reader.report.problem(`${set} is set but ${unset} is not: TLS needs both the certificate and its key`);
  }
  if (clientCaFile !== undefined && certFile === undefined) {
    reader.report.problem('COS_TLS_CLIENT_CA_FILE is set but COS_TLS_CERT_FILE is not: client certificates are asked for over TLS only');
  }
  if (clientAuth !== undefined && clientCaFile === undefined) {
    reader.report.problem('COS_TLS_CLIENT_AUTH is set but COS_TLS_CLIENT_CA_FILE is not: client certificates need a CA to be verified against');
  }
  if (certFile === undefined || keyFile === undefined) return undefined;
  return { certFile, keyFile, clientCaFile, clientAuth: clientAuth ?? 'required' };
}

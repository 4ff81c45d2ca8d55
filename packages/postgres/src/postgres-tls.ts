import { createSecureContext, type ConnectionOptions, type SecureContext } from 'node:tls';
import { StoreError } from '@chiefofstate/core';
import { watchTlsFiles, type TlsMaterial, type WatchedFiles } from '@chiefofstate/tls';

/**
 * libpq's sslmode values that COS supports. `allow` and `prefer` are left out on purpose: they
 * fall back to plaintext on the server's unauthenticated "no TLS here" answer, which anyone on
 * the path can forge, so the configuration refuses them (see docs/configuration.md).
 */
export const POSTGRES_SSL_MODES = ['disable', 'require', 'verify-ca', 'verify-full'] as const;
export type PostgresSslMode = (typeof POSTGRES_SSL_MODES)[number];

/** `rootCertFile` value meaning the trusted roots Node ships with (libpq's `sslrootcert=system`). */
export const SYSTEM_ROOT_CERTS = 'system';

/** TLS to PostgreSQL, with libpq's meanings. */
export interface PostgresTlsOptions {
  /**
   * disable: plaintext. require: encrypted, the server's certificate not checked, unless a
   * root certificate is given, when it behaves as verify-ca (as libpq does). verify-ca: the
   * certificate must chain to the root certificate. verify-full: and name the host connected to.
   */
  readonly mode: PostgresSslMode;
  /** PEM of the CA(s) the server's certificate must chain to, or `system`; unset: Node's trusted roots */
  readonly rootCertFile?: string;
  /** client certificate (PEM) for `cert` authentication, with its key */
  readonly certFile?: string;
  readonly keyFile?: string;
  /** how often the files are read again, ms; 0 never. Default 10 s */
  readonly reloadIntervalMs?: number;
}

export interface PostgresTlsEvents {
  /** changed files were taken: new connections use them */
  readonly onReload?: () => void;
  /** changed files could not be used; connections keep using the previous ones */
  readonly onReloadError?: (error: unknown) => void;
}

/** The TLS settings of new connections, following the files as they are rotated. */
export interface PostgresTls {
  readonly mode: PostgresSslMode;
  /** pg's `ssl` for a connection about to be opened: false, or tls.connect options of the current files */
  connectionOptions(): false | ConnectionOptions;
  /** reads the files now; true when new contents were taken */
  refresh(): Promise<boolean>;
  close(): void;
}

/**
 * Reads the files once (a missing or broken one is a ConfigError) and polls them. Each new
 * connection gets a secure context of the files' latest good contents, so a rotated client
 * certificate or CA is used without reopening the pool; open connections keep theirs.
 */
export function createPostgresTls(options: PostgresTlsOptions | undefined, events: PostgresTlsEvents = {}): PostgresTls {
  const mode = options?.mode ?? 'disable';
  if (options === undefined || mode === 'disable') {
    return { mode, connectionOptions: () => false, refresh: async () => false, close: () => {} };
  }
  const rootCertFile = options.rootCertFile === SYSTEM_ROOT_CERTS ? undefined : options.rootCertFile;
  // libpq: require with a root certificate checks the chain, like verify-ca
  const verifyChain = mode !== 'require' || options.rootCertFile !== undefined;
  const paths = {
    ...(rootCertFile !== undefined ? { caFile: rootCertFile } : {}),
    ...(options.certFile !== undefined ? { certFile: options.certFile } : {}),
    ...(options.keyFile !== undefined ? { keyFile: options.keyFile } : {}),
  };
  const files: WatchedFiles<TlsMaterial> | undefined =
    Object.keys(paths).length === 0
      ? undefined
      : watchTlsFiles({
          paths,
          ...(options.reloadIntervalMs !== undefined ? { intervalMs: options.reloadIntervalMs } : {}),
          onChange: () => events.onReload?.(),
          onError: (error) => events.onReloadError?.(error),
        });

  // one context per contents, made when first used after a change, shared by the connections
  let made: { material: TlsMaterial | undefined; context: SecureContext } | undefined;
  const secureContext = (): SecureContext => {
    const material = files?.current();
    if (made === undefined || made.material !== material) {
      made = { material, context: createSecureContext({ ...material }) };
    }
    return made.context;
  };

  return {
    mode,
    connectionOptions: () => ({
      secureContext: secureContext(),
      rejectUnauthorized: verifyChain,
      // verify-ca checks the chain only; verify-full keeps Node's host name check
      ...(mode === 'verify-full' ? {} : { checkServerIdentity: () => undefined }),
    }),
    refresh: () => files?.refresh() ?? Promise.resolve(false),
    close: () => files?.close(),
  };
}

/**
 * A connection failure explained for the operator when TLS was involved: the mode and the
 * reason (an untrusted or misnamed server certificate, a server without TLS), the original as
 * `cause`. Other errors are returned unchanged. Never names the password or a URL.
 */
export function explainTlsFailure(error: unknown, mode: PostgresSslMode): unknown {
  if (mode === 'disable' || !isTlsFailure(error)) return error;
  const reason = error instanceof Error ? error.message : String(error);
  const hint = hintOf(error);
  return new StoreError(
    `cannot open a TLS connection to PostgreSQL (COS_POSTGRES_SSL_MODE=${mode}): ${reason}${hint ? ` (${hint})` : ''}`,
    { cause: error },
  );
}

/** What the operator most likely has to fix, in COS's terms. */
function hintOf(error: Error): string | undefined {
  const code = (error as { code?: unknown }).code;
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return "the server's certificate does not name COS_POSTGRES_HOST";
  if (typeof code === 'string' && TLS_VERIFY_CODES.has(code)) {
    return "the server's certificate does not verify against COS_POSTGRES_SSL_ROOT_CERT";
  }
  if (/alert (unknown ca|bad certificate|certificate required|certificate unknown)/.test(error.message)) {
    return 'the server refused the client certificate COS_POSTGRES_SSL_CERT';
  }
  if (/does not support SSL/.test(error.message)) return 'the server has TLS off (ssl=off); COS_POSTGRES_SSL_MODE=disable talks to it in plaintext';
  return undefined;
}

function isTlsFailure(error: unknown): error is Error {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && (code.startsWith('ERR_TLS') || code.startsWith('ERR_SSL') || TLS_VERIFY_CODES.has(code))) return true;
  // pg's own words when the server answers the SSLRequest with 'N' or an error
  return /does not support SSL|establishing an SSL connection/.test(error.message);
}

/** OpenSSL's certificate verification failures, as Node reports them in `code`. */
const TLS_VERIFY_CODES = new Set([
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_SIGNATURE_FAILURE',
  'HOSTNAME_MISMATCH',
  'INVALID_CA',
  'INVALID_PURPOSE',
]);

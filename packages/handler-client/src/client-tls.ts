import { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { checkServerIdentity, createSecureContext, type PeerCertificate } from 'node:tls';
import { ConfigError, type Logger } from '@chiefofstate/core';
import { watchTlsFiles, type TlsMaterial } from '@chiefofstate/tls';
import type { ClientTlsOptions } from './grpc-transport.js';

/** The PEM files and server name of a TLS client; each optional. */
export interface ClientTlsFiles {
  /** the CA the server's certificate must chain to; unset: the system's root CAs */
  readonly caFile?: string | undefined;
  /** this client's certificate, for a server that verifies clients (mTLS); needs keyFile */
  readonly certFile?: string | undefined;
  readonly keyFile?: string | undefined;
  /** the name the server's certificate must carry (and SNI); unset: the host dialled */
  readonly serverName?: string | undefined;
}

/** What changed files hold, for a log line: the serial and end of validity of the client certificate. */
export interface ClientTlsSummary {
  readonly certSerial?: string;
  readonly certNotAfter?: string;
}

export interface WatchClientTlsOptions extends ClientTlsFiles {
  /** how often the files are read again, ms; 0 never. Default 10 s (COS_TLS_RELOAD_INTERVAL). */
  readonly reloadIntervalMs?: number;
  /** names the files in a start-up ConfigError, e.g. `COS_WRITE_SIDE_TLS_*` */
  readonly label?: string;
  /** the files changed and new connections use them */
  readonly onChange?: (summary: ClientTlsSummary) => void;
  /** changed files could not be used; the previous ones stay in use */
  readonly onError?: (error: unknown) => void;
}

/**
 * The TLS of a client's connections, kept current while its files change. A client takes
 * `current()` for each connection it opens, and is told through `subscribe` when the files
 * changed, so it can retire its open connection (see createHandlerTransport).
 */
export interface ClientTls {
  current(): ClientTlsOptions;
  /** `listener` runs after each change; returns the unsubscription */
  subscribe(listener: () => void): () => void;
  /** reads the files now; true when they changed (tests, or a caller's own refresh) */
  refresh(): Promise<boolean>;
  /** stops re-reading the files */
  close(): void;
}

/**
 * Reads a TLS client's files at once (a file missing or broken is a ConfigError) and every
 * `reloadIntervalMs` after. A secure context is built once per version of the files, not per
 * connection. A rotated certificate and key are taken once both files fit together.
 */
export function watchClientTls(options: WatchClientTlsOptions): ClientTls {
  const listeners = new Set<() => void>();
  const { serverName } = options;
  let current: ClientTlsOptions;
  const build = (material: TlsMaterial): ClientTlsOptions => ({
    secureContext: createSecureContext({ ...material }),
    ...serverIdentity(serverName),
  });
  let files;
  try {
    files = watchTlsFiles({
      paths: {
        ...(options.caFile !== undefined ? { caFile: options.caFile } : {}),
        ...(options.certFile !== undefined ? { certFile: options.certFile } : {}),
        ...(options.keyFile !== undefined ? { keyFile: options.keyFile } : {}),
      },
      ...(options.reloadIntervalMs !== undefined ? { intervalMs: options.reloadIntervalMs } : {}),
      onChange: (material) => {
        current = build(material);
        options.onChange?.(summarize(material));
        for (const listener of listeners) listener();
      },
      ...(options.onError ? { onError: options.onError } : {}),
    });
  } catch (error) {
    if (options.label === undefined) throw error;
    const problems = error instanceof ConfigError ? error.problems : [error instanceof Error ? error.message : String(error)];
    throw new ConfigError(problems.map((problem) => `${options.label}: ${problem}`));
  }
  current = build(files.current());
  return {
    current: () => current,
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    refresh: () => files.refresh(),
    close: () => files.close(),
  };
}

/**
 * `servername` sets SNI and the name checked; an IP address cannot be sent as SNI (RFC 6066),
 * so for one the certificate is checked against it directly.
 */
function serverIdentity(serverName: string | undefined): ClientTlsOptions {
  if (serverName === undefined) return {};
  if (isIP(serverName) === 0) return { servername: serverName };
  return { checkServerIdentity: (_host: string, certificate: PeerCertificate) => checkServerIdentity(serverName, certificate) };
}

function summarize(material: TlsMaterial): ClientTlsSummary {
  if (material.cert === undefined) return {};
  try {
    const certificate = new X509Certificate(material.cert);
    return { certSerial: certificate.serialNumber, certNotAfter: certificate.validTo };
  } catch {
    return {};
  }
}

export interface LoggedClientTlsOptions extends ClientTlsFiles {
  readonly reloadIntervalMs?: number;
  /** what the connection goes to, for log lines: `write handler`, `read side orders`, `peers` */
  readonly what: string;
  /** names the settings in a start-up ConfigError */
  readonly label: string;
  readonly logger: Logger;
}

/**
 * `watchClientTls` for a composition root: the files' changes logged (info), unusable new files
 * (warn), and an `onTlsFailure` logging refused handshakes (warn, with the reason); spread both
 * into a client's options, and close `tls` after the client.
 */
export function watchClientTlsLogged(options: LoggedClientTlsOptions): { tls: ClientTls; onTlsFailure: (error: Error) => void } {
  const { what, label, logger, ...files } = options;
  const tls = watchClientTls({
    ...files,
    label,
    onChange: (summary) => logger.info({ tls: what, ...summary }, `${what}: TLS files changed; new connections use them`),
    onError: (error) => logger.warn({ err: error, tls: what }, `${what}: changed TLS files cannot be used; the previous ones stay in use`),
  });
  return {
    tls,
    onTlsFailure: (error) =>
      logger.warn({ err: error, tls: what, code: (error as NodeJS.ErrnoException).code }, `${what}: TLS handshake failed: ${error.message}`),
  };
}

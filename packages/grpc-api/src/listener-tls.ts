import type { Http2SecureServer, Http2Session } from 'node:http2';
import type { TLSSocket } from 'node:tls';
import { certificateIdentities, watchTlsFiles, type TlsMaterial, type WatchedFiles } from '@chiefofstate/tls';
import type { CallPeer } from './caller-auth.js';
import type { HttpRequest } from './unary-call.js';

/** The gRPC listener's TLS (COS_TLS_*). */
export interface ListenerTlsOptions {
  /** PEM certificate chain served (COS_TLS_CERT_FILE) */
  readonly certFile: string;
  /** its private key (COS_TLS_KEY_FILE) */
  readonly keyFile: string;
  /** CA client certificates must chain to (COS_TLS_CLIENT_CA_FILE); unset: none asked for */
  readonly clientCaFile?: string | undefined;
  /**
   * COS_TLS_CLIENT_AUTH: `required` (default): a client without a valid certificate cannot
   * connect; `optional`: it may (to present a bearer token), while one presenting a certificate
   * that does not verify is cut.
   */
  readonly clientAuth?: 'required' | 'optional';
  /** how often the files are read again, ms; 0 never (COS_TLS_RELOAD_INTERVAL) */
  readonly reloadIntervalMs?: number;
  /** changed files that cannot be used (the previous ones stay in use) */
  readonly onReloadError?: (error: unknown) => void;
  /** the new files were taken: new connections get them */
  readonly onReload?: () => void;
}

/** TLS options of `http2.createSecureServer`, and the watch that keeps them current. */
export interface ListenerTls {
  readonly serverOptions: TlsMaterial & { requestCert: boolean; rejectUnauthorized: boolean; ALPNProtocols: string[] };
  /** swaps in rotated files (server.setSecureContext) from now on */
  attach(server: Http2SecureServer, onRefused?: (remoteAddress: string | undefined, reason: string) => void): void;
  close(): void;
}

/**
 * Reads the listener's certificate, key and client CA (a broken file is a ConfigError) and
 * re-reads them while they change: a rotated Kubernetes Secret reaches new connections without a
 * restart, open connections keep the certificate they were set up with.
 */
export function createListenerTls(options: ListenerTlsOptions): ListenerTls {
  const verifyClients = options.clientCaFile !== undefined;
  const required = verifyClients && (options.clientAuth ?? 'required') === 'required';
  let server: Http2SecureServer | undefined;
  const files: WatchedFiles<TlsMaterial> = watchTlsFiles({
    paths: {
      certFile: options.certFile,
      keyFile: options.keyFile,
      ...(options.clientCaFile !== undefined ? { caFile: options.clientCaFile } : {}),
    },
    ...(options.reloadIntervalMs !== undefined ? { intervalMs: options.reloadIntervalMs } : {}),
    onChange: (material) => {
      server?.setSecureContext({ ...material });
      options.onReload?.();
    },
    ...(options.onReloadError ? { onError: options.onReloadError } : {}),
  });
  return {
    serverOptions: {
      ...files.current(),
      // gRPC is HTTP/2 only; ALPN h2 is what every gRPC client offers
      ALPNProtocols: ['h2'],
      requestCert: verifyClients,
      rejectUnauthorized: required,
    },
    attach(secure, onRefused) {
      server = secure;
      if (!verifyClients || required) return;
      // optional client auth: no certificate is fine, one that does not verify is a mistake or worse
      secure.on('secureConnection', (socket: TLSSocket) => {
        if (socket.authorized || Object.keys(socket.getPeerCertificate()).length === 0) return;
        onRefused?.(socket.remoteAddress, `client certificate not verified: ${String(socket.authorizationError)}`);
        socket.destroy();
      });
    },
    close: () => files.close(),
  };
}

const peers = new WeakMap<Http2Session, CallPeer>();

/**
 * The connection of a request: its remote address and the names of its verified client
 * certificate, worked out once per connection.
 */
export function peerOf(request: HttpRequest): CallPeer {
  // HTTP/1.1 requests have no session: their socket is the connection
  const session = 'stream' in request ? request.stream.session : undefined;
  const known = session && peers.get(session);
  if (known) return known;
  const socket = (session?.socket ?? request.socket) as Partial<TLSSocket>;
  const verified = socket.authorized === true && typeof socket.getPeerCertificate === 'function';
  const peer: CallPeer = {
    remoteAddress: socket.remoteAddress,
    identities: verified ? certificateIdentities(socket.getPeerCertificate!()) : [],
  };
  if (session) peers.set(session, peer);
  return peer;
}

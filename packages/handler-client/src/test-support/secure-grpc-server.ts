import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';

/** One call as the server saw it. */
export interface SecureCall {
  readonly path: string;
  /** serial number of the verified client certificate; '' without one */
  readonly clientSerial: string;
  /** which TLS connection (1, 2, ...) it came on */
  readonly connection: number;
  /** request headers */
  readonly headers: http2.IncomingHttpHeaders;
}

export interface SecureGrpcServer {
  readonly port: number;
  readonly calls: SecureCall[];
  /** TLS handshakes that completed */
  handshakes(): number;
  /** handshakes this server refused (e.g. a client certificate it does not trust), by reason */
  readonly refused: string[];
  close(): Promise<void>;
}

export interface SecureGrpcServerOptions {
  readonly cert: string;
  readonly key: string;
  /** set: client certificates are required and verified against this CA (mTLS) */
  readonly clientCa?: string;
  /** the answer's protobuf bytes for a call to `path` (a gRPC status OK) */
  readonly respond: (path: string) => Uint8Array;
  /** awaited before the answer to the call numbered `index` (0, 1, ...) is sent */
  readonly hold?: (index: number) => Promise<void>;
}

/**
 * A gRPC server written on node:http2 over TLS (optionally mTLS), answering every unary call
 * with `respond`, and recording which certificate each call's connection presented: what a
 * stock server cannot tell a test.
 */
export async function startSecureGrpcServer(options: SecureGrpcServerOptions): Promise<SecureGrpcServer> {
  const server = http2.createSecureServer({
    cert: options.cert,
    key: options.key,
    ...(options.clientCa !== undefined ? { ca: options.clientCa, requestCert: true, rejectUnauthorized: true } : {}),
  });
  const calls: SecureCall[] = [];
  const refused: string[] = [];
  const sessions = new Set<http2.ServerHttp2Session>();
  const connections = new WeakMap<http2.ServerHttp2Session, number>();
  let handshakes = 0;
  let opened = 0;
  server.on('secureConnection', () => handshakes++);
  server.on('tlsClientError', (error) => refused.push(error.message));
  server.on('session', (session) => {
    sessions.add(session);
    connections.set(session, ++opened);
    session.on('close', () => sessions.delete(session));
  });
  server.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    const socket = stream.session?.socket as TLSSocket | undefined;
    const certificate = socket?.getPeerCertificate();
    calls.push({
      path: String(headers[':path']),
      clientSerial: certificate?.serialNumber ?? '',
      connection: (stream.session && connections.get(stream.session as http2.ServerHttp2Session)) ?? 0,
      headers,
    });
    const index = calls.length - 1;
    stream.resume();
    stream.on('end', async () => {
      await options.hold?.(index);
      if (stream.destroyed) return;
      const body = options.respond(String(headers[':path']));
      const frame = Buffer.alloc(5 + body.byteLength);
      frame.writeUInt32BE(body.byteLength, 1);
      frame.set(body, 5);
      stream.respond({ ':status': 200, 'content-type': 'application/grpc+proto' }, { waitForTrailers: true });
      stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(frame);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    calls,
    refused,
    handshakes: () => handshakes,
    close: () =>
      new Promise<void>((resolve) => {
        for (const session of sessions) session.destroy();
        server.close(() => resolve());
      }),
  };
}

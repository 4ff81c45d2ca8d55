import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { ConnectRouter } from '@connectrpc/connect';
import { connectNodeAdapter } from '@connectrpc/connect-node';

/**
 * A real gRPC server over loopback HTTP/2 (h2c), for tests: Connect's node adapter on
 * node:http2, speaking the gRPC protocol to our client.
 */
export interface TestGrpcServer {
  readonly port: number;
  /** Stops listening and drops every open connection, as a crashing handler would. */
  stop(): Promise<void>;
  /** Listens again on the same port. */
  start(): Promise<void>;
}

export async function startTestGrpcServer(
  routes: (router: ConnectRouter) => void,
  port = 0,
  /** key and certificate: serve TLS (h2) instead of h2c */
  tls?: { key: string; cert: string },
): Promise<TestGrpcServer> {
  const handler = connectNodeAdapter({ routes, grpc: true, connect: false, grpcWeb: false });
  let server: http2.Http2Server | http2.Http2SecureServer | undefined;
  let sessions = new Set<http2.ServerHttp2Session>();
  let boundPort = port;

  const listen = async (): Promise<void> => {
    const created = tls ? http2.createSecureServer({ ...tls }, handler) : http2.createServer(handler);
    const tracked = new Set<http2.ServerHttp2Session>();
    created.on('session', (session) => {
      tracked.add(session);
      session.on('close', () => tracked.delete(session));
    });
    await new Promise<void>((resolve, reject) => {
      created.once('error', reject);
      created.listen(boundPort, '127.0.0.1', () => {
        created.off('error', reject);
        resolve();
      });
    });
    boundPort = (created.address() as AddressInfo).port;
    server = created;
    sessions = tracked;
  };

  await listen();
  return {
    get port() {
      return boundPort;
    },
    async stop() {
      const current = server;
      server = undefined;
      if (!current) return;
      const closed = new Promise<void>((resolve) => current.close(() => resolve()));
      for (const session of sessions) session.destroy();
      await closed;
    },
    start: listen,
  };
}

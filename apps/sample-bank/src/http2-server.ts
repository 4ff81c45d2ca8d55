import { createServer, type ServerHttp2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { ConnectRouter } from '@connectrpc/connect';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import { withSpecGrpcMessage } from './grpc-message.js';

export interface Http2Server {
  readonly host: string;
  /** the port actually bound (useful with port 0) */
  readonly port: number;
  /**
   * Stops accepting connections, lets calls in flight finish for up to `graceMs`, then cuts the
   * rest. Resolves once the server is closed.
   */
  close(graceMs?: number): Promise<void>;
}

/**
 * Serves Connect routes over cleartext HTTP/2: gRPC for COS (and any stock gRPC client), plus
 * Connect and gRPC-Web for free on the same port. Shared by the write and the read side.
 */
export async function serveHttp2(
  routes: (router: ConnectRouter) => void,
  options: { host: string; port: number },
): Promise<Http2Server> {
  const handler = connectNodeAdapter({ routes });
  const server = createServer((request, response) => {
    withSpecGrpcMessage(response);
    handler(request, response);
  });
  const sessions = new Set<ServerHttp2Session>();
  server.on('session', (session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;

  let closing: Promise<void> | undefined;
  return {
    host: options.host,
    port,
    close(graceMs = 5_000) {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        // GOAWAY: clients (COS) open no new streams here and reconnect elsewhere; open calls finish.
        for (const session of sessions) session.close();
        const timer = setTimeout(() => {
          for (const session of sessions) session.destroy();
        }, graceMs);
        timer.unref();
      });
      return closing;
    },
  };
}

import { createServer, type Http2Server, type ServerHttp2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { ConnectRouter, Interceptor } from '@connectrpc/connect';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import { normaliseGrpcMessage } from './grpc-message.js';
import { createUnaryGrpc } from './unary-grpc.js';

export interface GrpcServerOptions {
  readonly host: string;
  /** 0 picks a free port */
  readonly port: number;
  /** registers the services */
  readonly routes: (router: ConnectRouter) => void;
  /** largest request or response message; larger ones fail with RESOURCE_EXHAUSTED */
  readonly maxMessageBytes: number;
  readonly interceptors?: Interceptor[];
}

export interface GrpcServer {
  readonly port: number;
  /**
   * Stops accepting calls, lets in-flight calls finish for up to `graceMs`, then cuts what is
   * left. Resolves when the server is closed.
   */
  close(graceMs?: number): Promise<void>;
}

/**
 * Serves gRPC (HTTP/2, `application/grpc`), gRPC-Web and Connect on one cleartext HTTP/2 port.
 * Unary gRPC calls are served by createUnaryGrpc, the rest by Connect's node adapter.
 */
export async function startGrpcServer(options: GrpcServerOptions): Promise<GrpcServer> {
  // gRPC unary calls take the lean path; the Connect adapter serves everything else.
  const unary = createUnaryGrpc({
    maxMessageBytes: options.maxMessageBytes,
    ...(options.interceptors ? { interceptors: options.interceptors } : {}),
  });
  const handler = connectNodeAdapter({
    routes: (router) => options.routes(unary.router(router)),
    readMaxBytes: options.maxMessageBytes,
    writeMaxBytes: options.maxMessageBytes,
    ...(options.interceptors ? { interceptors: options.interceptors } : {}),
  });
  const server: Http2Server = createServer({}, (request, response) => {
    if (unary.handle(request, response)) return;
    normaliseGrpcMessage(response);
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
    port,
    close(graceMs = 10_000) {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        // GOAWAY: clients stop sending new calls on these sessions; open streams complete.
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

import { createServer, type ServerHttp2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import { WriteSideHandlerService } from '@chiefofstate/protocol';
import { withSpecGrpcMessage } from './grpc-message.js';
import { createBankWriteHandler, type BankHandlerLogger } from './write-handler.js';

export interface BankHandlerServerOptions {
  /** interface to listen on; default 0.0.0.0 */
  host?: string;
  /** port to listen on; 0 picks a free one; default 50051 */
  port?: number;
  logger?: BankHandlerLogger;
}

export interface BankHandlerServer {
  readonly host: string;
  /** the port actually bound (useful with port 0) */
  readonly port: number;
  /**
   * Stops accepting connections, lets calls in flight finish for up to `graceMs`, then cuts the
   * rest. Resolves once the server is closed.
   */
  close(graceMs?: number): Promise<void>;
}

export const DEFAULT_PORT = 50051;
export const DEFAULT_HOST = '0.0.0.0';

/**
 * Serves the bank's WriteSideHandlerService over cleartext HTTP/2: gRPC for COS (and any stock
 * gRPC client), plus Connect and gRPC-Web for free on the same port.
 */
export async function startBankHandlerServer(options: BankHandlerServerOptions = {}): Promise<BankHandlerServer> {
  const host = options.host ?? DEFAULT_HOST;
  const handler = connectNodeAdapter({
    routes: (router) => {
      router.service(WriteSideHandlerService, createBankWriteHandler({ ...(options.logger ? { logger: options.logger } : {}) }));
    },
  });
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
    server.listen(options.port ?? DEFAULT_PORT, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;

  let closing: Promise<void> | undefined;
  return {
    host,
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

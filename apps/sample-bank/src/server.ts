import { WriteSideHandlerService } from '@chiefofstate/protocol';
import type { Logger } from '@chiefofstate/core';
import { serveHttp2, type Http2Server } from './http2-server.js';
import { createBankWriteHandler } from './write-handler.js';

export interface BankHandlerServerOptions {
  /** interface to listen on; default 0.0.0.0 */
  host?: string;
  /** port to listen on; 0 picks a free one; default 50051 */
  port?: number;
  logger?: Logger;
}

export type BankHandlerServer = Http2Server;

export const DEFAULT_PORT = 50051;
export const DEFAULT_HOST = '0.0.0.0';

/**
 * Serves the bank's WriteSideHandlerService over cleartext HTTP/2: gRPC for COS (and any stock
 * gRPC client), plus Connect and gRPC-Web for free on the same port.
 */
export async function startBankHandlerServer(options: BankHandlerServerOptions = {}): Promise<BankHandlerServer> {
  const handler = createBankWriteHandler({ ...(options.logger ? { logger: options.logger } : {}) });
  return serveHttp2((router) => router.service(WriteSideHandlerService, handler), {
    host: options.host ?? DEFAULT_HOST,
    port: options.port ?? DEFAULT_PORT,
  });
}

import { ReadSideHandlerService } from '@chiefofstate/protocol';
import type { Logger } from '@chiefofstate/core';
import { openBalanceStore, type AccountBalance, type BalanceStore } from './balance-store.js';
import { serveHttp2, type Http2Server } from './http2-server.js';
import { createBankReadSideHandler } from './read-side.js';
import { DEFAULT_HOST } from './server.js';

export const DEFAULT_READ_SIDE_PORT = 50052;

export interface BankReadSideServerOptions {
  /** interface to listen on; default 0.0.0.0 */
  readonly host?: string;
  /** port to listen on; 0 picks a free one; default 50052 */
  readonly port?: number;
  /** a store to use (and close with the server); else one is opened from the two settings below */
  readonly store?: BalanceStore;
  /** PostgreSQL URL of the balance table (READ_SIDE_DATABASE_URL) */
  readonly databaseUrl?: string;
  /** PGlite directory when no URL is given (READ_SIDE_DATA_DIR); unset: in memory */
  readonly dataDir?: string;
  readonly logger?: Logger;
}

export interface BankReadSideServer extends Http2Server {
  /** the balance table, by account id */
  listBalances(): Promise<AccountBalance[]>;
}

/** Serves the sample ReadSideHandlerService over cleartext HTTP/2, with its balance store. */
export async function startBankReadSideServer(options: BankReadSideServerOptions = {}): Promise<BankReadSideServer> {
  const store =
    options.store ??
    (await openBalanceStore({
      ...(options.databaseUrl ? { databaseUrl: options.databaseUrl } : {}),
      ...(options.dataDir ? { dataDir: options.dataDir } : {}),
    }));
  let server: Http2Server;
  try {
    const handler = createBankReadSideHandler({ store, ...(options.logger ? { logger: options.logger } : {}) });
    server = await serveHttp2((router) => router.service(ReadSideHandlerService, handler), {
      host: options.host ?? DEFAULT_HOST,
      port: options.port ?? DEFAULT_READ_SIDE_PORT,
    });
  } catch (error) {
    await store.close();
    throw error;
  }
  let closing: Promise<void> | undefined;
  return {
    host: server.host,
    port: server.port,
    listBalances: () => store.listBalances(),
    close(graceMs) {
      closing ??= server.close(graceMs).then(() => store.close());
      return closing;
    },
  };
}

import { loadConfig } from '@chiefofstate/config';
import { startCosServer, type RunningCosServer } from '@chiefofstate/cos-server';
import type { Logger } from '@chiefofstate/logging';
import { join, resolve } from 'node:path';
import {
  startBankHandlerServer,
  startBankReadSideServer,
  type BankHandlerServer,
  type BankReadSideServer,
} from '@chiefofstate/sample-bank';

export interface QuickstartOptions {
  /** the environment COS reads; the quickstart fills in the handler's address */
  readonly env: Record<string, string | undefined>;
  readonly cwd: string;
  readonly logger: Logger;
  /** port of the sample bank handler; 0 picks a free one */
  readonly handlerPort: number;
  /** port of the sample read side (account balances); 0 picks a free one; default 0 */
  readonly readSidePort?: number;
}

export interface RunningQuickstart {
  readonly cos: RunningCosServer;
  readonly handler: BankHandlerServer;
  /** the sample read side: `listBalances()` reads its table */
  readonly readSide: BankReadSideServer;
  /** where the read side keeps its embedded database */
  readonly readSideDataDir: string;
  close(): Promise<void>;
}

/**
 * Chief-of-State on the embedded store with the sample bank-account write handler and the sample
 * read side (a balance table), composed in one process from the same libraries the separate
 * binaries use.
 */
export async function startQuickstart(options: QuickstartOptions): Promise<RunningQuickstart> {
  const { logger } = options;
  // The read side's own embedded database, next to COS's (a subdirectory PGlite leaves alone).
  const readSideDataDir = resolve(options.cwd, options.env['COS_DATA_DIR']?.trim() || '.cos-data', 'read-side');
  const readSide = await startBankReadSideServer({
    host: '127.0.0.1',
    port: options.readSidePort ?? 0,
    dataDir: readSideDataDir,
    logger: logger.child({ component: 'sample-bank-read-side' }),
  });
  let handler: BankHandlerServer;
  try {
    handler = await startBankHandlerServer({
      host: '127.0.0.1',
      port: options.handlerPort,
      logger: logger.child({ component: 'sample-bank' }),
    });
  } catch (error) {
    await readSide.close();
    throw error;
  }
  try {
    const { config, warnings } = loadConfig({
      env: {
        LOG_STYLE: 'SIMPLE',
        COS_ADDRESS: '127.0.0.1',
        ...options.env,
        WRITE_SIDE_HANDLER_SERVICE_HOST: '127.0.0.1',
        WRITE_SIDE_HANDLER_SERVICE_PORT: String(handler.port),
        // COS delivers every persisted event to the sample read side, which keeps balances.
        COS_READ_SIDE_ENABLED: 'true',
        READ_SIDE_HANDLER_SERVICE_HOST: '127.0.0.1',
        READ_SIDE_HANDLER_SERVICE_PORT: String(readSide.port),
      },
      cwd: options.cwd,
    });
    for (const warning of warnings) logger.warn(warning);
    const cos = await startCosServer({ config, logger: logger.child({ component: 'cos-server' }) });
    return {
      cos,
      handler,
      readSide,
      readSideDataDir,
      async close() {
        await cos.close();
        await handler.close();
        await readSide.close();
      },
    };
  } catch (error) {
    await handler.close();
    await readSide.close();
    throw error;
  }
}

/** What the quickstart prints once it serves. */
export function instructions(cosPort: number, handlerPort: number, dataDir: string, readSidePort?: number): string {
  const cli = 'node apps/sample-bank/dist/cli.js';
  const address = `127.0.0.1:${cosPort}`;
  const flag = cosPort === 9000 ? '' : ` --address ${address}`;
  return [
    '',
    `Chief-of-State is serving on ${address} (embedded store in ${dataDir}),`,
    `with the sample bank-account write handler on 127.0.0.1:${handlerPort}.`,
    ...(readSidePort === undefined
      ? []
      : [
          `Balances are kept by the sample read side on 127.0.0.1:${readSidePort} (table account_balances in ${join(dataDir, 'read-side')});`,
          'it logs each balance it applies.',
        ]),
    '',
    'Send it commands from another terminal (amounts in cents):',
    `  ${cli}${flag} open acc-1 alice 1000`,
    `  ${cli}${flag} deposit acc-1 500`,
    `  ${cli}${flag} withdraw acc-1 200`,
    `  ${cli}${flag} withdraw acc-1 999999   # FAILED_PRECONDITION, with a bank.v1.InsufficientFunds detail`,
    `  ${cli}${flag} get acc-1`,
    '',
    'Or with grpcurl, from the repository root:',
    `  grpcurl -plaintext -import-path proto -proto chief_of_state/v1/service.proto \\`,
    `    -d '{"entity_id":"acc-1"}' ${address} chief_of_state.v1.ChiefOfStateService/GetState`,
    '',
    'Ctrl-C stops it; the state stays in the data directory for the next start.',
    '',
  ].join('\n');
}

import { loadConfig } from '@chiefofstate/config';
import { startCosServer, type RunningCosServer } from '@chiefofstate/cos-server';
import type { Logger } from '@chiefofstate/logging';
import { startBankHandlerServer, type BankHandlerServer } from '@chiefofstate/sample-bank';

export interface QuickstartOptions {
  /** the environment COS reads; the quickstart fills in the handler's address */
  readonly env: Record<string, string | undefined>;
  readonly cwd: string;
  readonly logger: Logger;
  /** port of the sample bank handler; 0 picks a free one */
  readonly handlerPort: number;
}

export interface RunningQuickstart {
  readonly cos: RunningCosServer;
  readonly handler: BankHandlerServer;
  close(): Promise<void>;
}

/**
 * Chief-of-State on the embedded store with the sample bank-account write handler, composed in
 * one process from the same libraries the separate binaries use.
 */
export async function startQuickstart(options: QuickstartOptions): Promise<RunningQuickstart> {
  const { logger } = options;
  const handler = await startBankHandlerServer({
    host: '127.0.0.1',
    port: options.handlerPort,
    logger: logger.child({ component: 'sample-bank' }),
  });
  try {
    const { config, warnings } = loadConfig({
      env: {
        LOG_STYLE: 'SIMPLE',
        COS_ADDRESS: '127.0.0.1',
        ...options.env,
        WRITE_SIDE_HANDLER_SERVICE_HOST: '127.0.0.1',
        WRITE_SIDE_HANDLER_SERVICE_PORT: String(handler.port),
      },
      cwd: options.cwd,
    });
    for (const warning of warnings) logger.warn(warning);
    const cos = await startCosServer({ config, logger: logger.child({ component: 'cos-server' }) });
    return {
      cos,
      handler,
      async close() {
        await cos.close();
        await handler.close();
      },
    };
  } catch (error) {
    await handler.close();
    throw error;
  }
}

/** What the quickstart prints once it serves. */
export function instructions(cosPort: number, handlerPort: number, dataDir: string): string {
  const cli = 'node apps/sample-bank/dist/cli.js';
  const address = `127.0.0.1:${cosPort}`;
  const flag = cosPort === 9000 ? '' : ` --address ${address}`;
  return [
    '',
    `Chief-of-State is serving on ${address} (embedded store in ${dataDir}),`,
    `with the sample bank-account write handler on 127.0.0.1:${handlerPort}.`,
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

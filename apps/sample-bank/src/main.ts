#!/usr/bin/env node
// The sample bank write handler as a process: `node dist/main.js` (PORT, HOST, LOG_LEVEL).
import { pino } from 'pino';
import { bankHandlerConfigFromEnv, type BankHandlerConfig } from './config.js';
import { startBankHandlerServer } from './server.js';

const SHUTDOWN_GRACE_MS = 5_000;

async function main(): Promise<void> {
  let config: BankHandlerConfig;
  try {
    config = bankHandlerConfigFromEnv(process.env);
  } catch (error) {
    process.stderr.write(`sample-bank: ${(error as Error).message}\n`);
    process.exit(2);
  }
  const logger = pino({ name: 'sample-bank', level: config.logLevel });
  const server = await startBankHandlerServer({ host: config.host, port: config.port, logger }).catch(
    (error: unknown) => {
      logger.fatal({ err: error }, 'could not start the bank write handler');
      process.exit(1);
    },
  );
  logger.info({ host: server.host, port: server.port }, 'bank write handler listening');

  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      logger.warn({ signal }, 'second signal, exiting now');
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, 'shutting down');
    void server.close(SHUTDOWN_GRACE_MS).then(() => {
      logger.info('stopped');
      process.exit(0);
    });
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

void main();

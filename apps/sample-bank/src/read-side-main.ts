#!/usr/bin/env node
// The sample bank read side as a process: `node dist/read-side-main.js`
// (PORT, HOST, LOG_LEVEL, READ_SIDE_DATABASE_URL or READ_SIDE_DATA_DIR).
import { pino } from 'pino';
import { bankReadSideConfigFromEnv, type BankReadSideConfig } from './config.js';
import { startBankReadSideServer } from './read-side-server.js';

const SHUTDOWN_GRACE_MS = 5_000;

async function main(): Promise<void> {
  let config: BankReadSideConfig;
  try {
    config = bankReadSideConfigFromEnv(process.env);
  } catch (error) {
    process.stderr.write(`sample-bank read side: ${(error as Error).message}\n`);
    process.exit(2);
  }
  const logger = pino({ name: 'sample-bank-read-side', level: config.logLevel });
  const server = await startBankReadSideServer({
    host: config.host,
    port: config.port,
    logger,
    ...(config.databaseUrl ? { databaseUrl: config.databaseUrl } : {}),
    ...(config.dataDir ? { dataDir: config.dataDir } : {}),
  }).catch((error: unknown) => {
    logger.fatal({ err: error }, 'could not start the bank read side');
    process.exit(1);
  });
  const store = config.databaseUrl ? 'postgres' : config.dataDir ? `embedded (${config.dataDir})` : 'embedded (in memory)';
  logger.info({ host: server.host, port: server.port, store }, 'bank read side listening');

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

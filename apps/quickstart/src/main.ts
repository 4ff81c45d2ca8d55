#!/usr/bin/env node
// `npm start`: the quickstart process.
import { resolve } from 'node:path';
import { ConfigError } from '@chiefofstate/core';
import { createLogger } from '@chiefofstate/logging';
import { instructions, startQuickstart } from './quickstart.js';

const env = process.env;
const logger = createLogger({
  level: (env['LOG_LEVEL']?.toLowerCase() as 'info' | undefined) ?? 'info',
  style: env['LOG_STYLE']?.toUpperCase() === 'JSON' ? 'JSON' : 'SIMPLE',
  name: 'quickstart',
});

try {
  const quickstart = await startQuickstart({
    env,
    cwd: process.cwd(),
    logger,
    handlerPort: Number(env['BANK_HANDLER_PORT'] ?? 50051),
    readSidePort: Number(env['BANK_READ_SIDE_PORT'] ?? 50052),
  });
  const dataDir = resolve(env['COS_DATA_DIR'] ?? '.cos-data');
  process.stdout.write(instructions(quickstart.cos.port, quickstart.handler.port, dataDir, quickstart.readSide.port));
  const stop = () => {
    setTimeout(() => process.exit(1), 10_000).unref();
    void quickstart.close().then(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
} catch (error) {
  if (error instanceof ConfigError) process.stderr.write(`quickstart: ${error.message}\n`);
  else process.stderr.write(`quickstart failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(error instanceof ConfigError ? 2 : 1);
}

#!/usr/bin/env node
// The cos-server process: configuration from the environment, logs to stdout, SIGTERM to stop.
import { runCosProcess } from '@chiefofstate/process';
import { startCosServer } from './cos-server.js';

runCosProcess({
  name: 'chief-of-state',
  env: process.env,
  cwd: process.cwd(),
  async start({ config, logger }) {
    const server = await startCosServer({ config, logger });
    logger.info({ port: server.port, httpPort: server.httpPort, metricsPort: server.metricsPort }, 'operations endpoints ready');
    return server;
  },
});

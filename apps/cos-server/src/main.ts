#!/usr/bin/env node
// The cos-server process: configuration from the environment, logs to stdout, SIGTERM to stop.
import { loadConfig, redactConfig } from '@chiefofstate/config';
import { ConfigError } from '@chiefofstate/core';
import { createLogger } from '@chiefofstate/logging';
import { createTracing } from '@chiefofstate/tracing';
import { startCosServer } from './cos-server.js';

const SHUTDOWN_LIMIT_MS = 10_000;

async function main(): Promise<void> {
  let loaded;
  try {
    loaded = loadConfig({ env: process.env, cwd: process.cwd() });
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`chief-of-state: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  const { config, warnings } = loaded;
  const tracing = createTracing({
    serviceName: config.telemetry.serviceName,
    teamName: config.telemetry.teamName,
    tracesEndpoint: config.telemetry.tracesEndpoint,
  });
  const logger = createLogger({
    level: config.log.level,
    style: config.log.style,
    name: config.telemetry.serviceName,
    mixin: tracing.logFields,
  });
  for (const warning of warnings) logger.warn(warning);
  logger.info({ config: redactConfig(config) }, 'starting chief-of-state');

  const server = await startCosServer({ config, logger });
  logger.info(
    { metricsPort: server.metricsPort, tracing: tracing.enabled ? config.telemetry.tracesEndpoint : 'off' },
    'operations endpoints ready',
  );

  const stop = (signal: string) => {
    logger.info({ signal }, 'stopping');
    // Whatever happens, the process is gone within the limit.
    setTimeout(() => {
      logger.error('shutdown took too long; exiting');
      process.exit(1);
    }, SHUTDOWN_LIMIT_MS).unref();
    server
      .close(SHUTDOWN_LIMIT_MS - 1_000)
      .then(() => tracing.shutdown())
      .then(() => new Promise<void>((resolve) => logger.flush(() => resolve())))
      .then(
        () => process.exit(0),
        (error: unknown) => {
          logger.error({ err: error }, 'shutdown failed');
          process.exit(1);
        },
      );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

main().catch((error: unknown) => {
  process.stderr.write(`chief-of-state failed to start: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});

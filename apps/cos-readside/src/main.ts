#!/usr/bin/env node
// The cos-readside process: configuration from the environment, logs to stdout, SIGTERM to stop.
import { loadConfig, redactConfig } from '@chiefofstate/config';
import { ConfigError } from '@chiefofstate/core';
import { createLogger } from '@chiefofstate/logging';
import { createTracing } from '@chiefofstate/tracing';
import { startCosReadside } from './cos-readside.js';

const SHUTDOWN_LIMIT_MS = 10_000;

/**
 * The configuration is cos-server's. Two defaults differ here: read sides are on unless
 * COS_READ_SIDE_ENABLED says otherwise, and the write handler, which this process never calls,
 * need not be configured (loadConfig requires it, so a placeholder stands in when it is unset).
 */
function environment(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const defaults: Record<string, string> = { COS_READ_SIDE_ENABLED: 'true' };
  if (env['WRITE_SIDE_HANDLER_SERVICE_HOST'] === undefined && env['COS_WRITE_SIDE_HOST'] === undefined) {
    defaults['WRITE_SIDE_HANDLER_SERVICE_HOST'] = 'unused.invalid';
  }
  if (env['WRITE_SIDE_HANDLER_SERVICE_PORT'] === undefined && env['COS_WRITE_SIDE_PORT'] === undefined) {
    defaults['WRITE_SIDE_HANDLER_SERVICE_PORT'] = '1';
  }
  return { ...defaults, ...env };
}

async function main(): Promise<void> {
  let loaded;
  try {
    loaded = loadConfig({ env: environment(process.env), cwd: process.cwd() });
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`cos-readside: ${error.message}\n`);
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
  logger.info({ config: redactConfig(config) }, 'starting cos-readside');

  let readside;
  try {
    readside = await startCosReadside({ config, logger });
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`cos-readside: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  const running = readside;

  const stop = (signal: string) => {
    logger.info({ signal }, 'stopping');
    // Whatever happens, the process is gone within the limit.
    setTimeout(() => {
      logger.error('shutdown took too long; exiting');
      process.exit(1);
    }, SHUTDOWN_LIMIT_MS).unref();
    running
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
  process.stderr.write(`cos-readside failed to start: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});

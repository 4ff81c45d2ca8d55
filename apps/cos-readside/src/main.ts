#!/usr/bin/env node
// The cos-readside process: configuration from the environment, logs to stdout, SIGTERM to stop.
import { runCosProcess } from '@chiefofstate/process';
import { startCosReadside } from './cos-readside.js';

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

runCosProcess({
  name: 'cos-readside',
  env: environment(process.env),
  cwd: process.cwd(),
  start: ({ config, logger }) => startCosReadside({ config, logger }),
});

import { DEFAULT_HOST, DEFAULT_PORT } from './server.js';

/** The sample handler's settings, all from the environment (see README). */
export interface BankHandlerConfig {
  host: string;
  port: number;
  logLevel: string;
}

const LOG_LEVELS = new Set(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']);

/** Reads PORT, HOST and LOG_LEVEL; throws with a readable message on a bad value. */
export function bankHandlerConfigFromEnv(env: Readonly<Record<string, string | undefined>>): BankHandlerConfig {
  const rawPort = env['PORT']?.trim() || String(DEFAULT_PORT);
  const port = Number(rawPort);
  if (!/^\d+$/.test(rawPort) || port > 65535) {
    throw new Error(`PORT must be an integer from 0 to 65535, got "${rawPort}"`);
  }
  const logLevel = env['LOG_LEVEL']?.trim().toLowerCase() || 'info';
  if (!LOG_LEVELS.has(logLevel)) {
    throw new Error(`LOG_LEVEL must be one of ${[...LOG_LEVELS].join(', ')}, got "${logLevel}"`);
  }
  return { host: env['HOST']?.trim() || DEFAULT_HOST, port, logLevel };
}

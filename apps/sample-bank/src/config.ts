import { DEFAULT_READ_SIDE_PORT } from './read-side-server.js';
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
  return serverConfig(env, DEFAULT_PORT);
}

/** The sample read side's settings: those of the handler plus where the balance table lives. */
export interface BankReadSideConfig extends BankHandlerConfig {
  /** READ_SIDE_DATABASE_URL: a PostgreSQL URL; unset: the embedded PGlite */
  databaseUrl?: string;
  /** READ_SIDE_DATA_DIR: PGlite's directory; unset (and no URL): in memory */
  dataDir?: string;
}

/** Reads PORT (default 50052), HOST, LOG_LEVEL, READ_SIDE_DATABASE_URL and READ_SIDE_DATA_DIR. */
export function bankReadSideConfigFromEnv(env: Readonly<Record<string, string | undefined>>): BankReadSideConfig {
  const config: BankReadSideConfig = serverConfig(env, DEFAULT_READ_SIDE_PORT);
  const databaseUrl = env['READ_SIDE_DATABASE_URL']?.trim();
  if (databaseUrl) {
    if (!/^postgres(ql)?:\/\//.test(databaseUrl)) {
      throw new Error('READ_SIDE_DATABASE_URL must be a postgres:// URL');
    }
    config.databaseUrl = databaseUrl;
  }
  const dataDir = env['READ_SIDE_DATA_DIR']?.trim();
  if (dataDir) config.dataDir = dataDir;
  return config;
}

function serverConfig(env: Readonly<Record<string, string | undefined>>, defaultPort: number): BankHandlerConfig {
  const rawPort = env['PORT']?.trim() || String(defaultPort);
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

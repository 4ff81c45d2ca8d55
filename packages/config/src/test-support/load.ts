import { ConfigError } from '@chiefofstate/core';
import { loadConfig, type LoadedConfig } from '../load-config.js';

/** The two variables without a default; every test starts from these. */
export const REQUIRED = {
  WRITE_SIDE_HANDLER_SERVICE_HOST: 'handler',
  WRITE_SIDE_HANDLER_SERVICE_PORT: '50051',
} as const;

export const CWD = '/srv/cos';

export function load(env: Record<string, string | undefined>, cwd = CWD): LoadedConfig {
  return loadConfig({ env: { ...REQUIRED, ...env }, cwd });
}

/** The ConfigError thrown for `env` (with the required variables unless overridden). */
export function configErrorOf(env: Record<string, string | undefined>, cwd = CWD): ConfigError {
  try {
    load(env, cwd);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error(`expected a ConfigError for ${JSON.stringify(env)}`);
}

export function problemsOf(env: Record<string, string | undefined>, cwd = CWD): readonly string[] {
  return configErrorOf(env, cwd).problems;
}

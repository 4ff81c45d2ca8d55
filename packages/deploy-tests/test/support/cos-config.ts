import { loadConfig, type LoadedConfig } from '@chiefofstate/config';
import { imageName } from './repo.js';

/**
 * Loads a COS container's environment with the real configuration library, as the image's
 * process would. cos-readside starts from two other defaults (apps/cos-readside/src/main.ts):
 * read sides on, and a placeholder write handler, which it never calls.
 */
export function loadCosConfig(image: string, env: Readonly<Record<string, string>>, cwd: string): LoadedConfig {
  const defaults: Record<string, string> = {};
  if (imageName(image) === 'chiefofstate/cos-readside') {
    defaults['COS_READ_SIDE_ENABLED'] = 'true';
    if (env['WRITE_SIDE_HANDLER_SERVICE_HOST'] === undefined && env['COS_WRITE_SIDE_HOST'] === undefined) {
      defaults['WRITE_SIDE_HANDLER_SERVICE_HOST'] = 'unused.invalid';
    }
    if (env['WRITE_SIDE_HANDLER_SERVICE_PORT'] === undefined && env['COS_WRITE_SIDE_PORT'] === undefined) {
      defaults['WRITE_SIDE_HANDLER_SERVICE_PORT'] = '1';
    }
  }
  return loadConfig({ env: { ...defaults, ...env }, cwd });
}

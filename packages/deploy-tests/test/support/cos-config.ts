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

/**
 * Settings of issue 13 (docs/security.md) that other branches are adding to the configuration
 * library while the manifests already use them (deploy/kubernetes/tls). Until a name is in
 * CONFIG_VARIABLES it is allowed in the manifests and left out of what loadConfig is given; once
 * it is, it is checked like any other. Empty this list once every name is known.
 */
export const PENDING_VARIABLES: ReadonlySet<string> = new Set([
  'COS_POSTGRES_SSL_MODE',
  'COS_POSTGRES_SSL_ROOT_CERT',
  'COS_POSTGRES_SSL_CERT',
  'COS_POSTGRES_SSL_KEY',
]);

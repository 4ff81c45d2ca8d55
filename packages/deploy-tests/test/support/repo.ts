import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CONFIG_VARIABLES } from '@chiefofstate/config';
import { DEFAULT_PORT as SAMPLE_BANK_PORT } from '@chiefofstate/sample-bank';
import { REPO_ROOT, type Workload } from '../../src/index.js';

export { REPO_ROOT };

export function repoPath(...parts: string[]): string {
  return join(REPO_ROOT, ...parts);
}

export function readRepoFile(...parts: string[]): string {
  return readFileSync(repoPath(...parts), 'utf8');
}

/** A variable's documented default, as a number. */
export function defaultPortOf(name: string): number {
  const variable = CONFIG_VARIABLES.find((item) => item.name === name);
  if (!variable) throw new Error(`no variable ${name}`);
  const port = Number.parseInt(variable.default, 10);
  if (!Number.isInteger(port)) throw new Error(`${name} has no numeric default`);
  return port;
}

export const COS_PORT = defaultPortOf('COS_PORT');
export const COS_METRICS_PORT = defaultPortOf('COS_METRICS_PORT');

export interface ImageSpec {
  readonly dockerfile: string;
  /** the directory under apps/ */
  readonly app: string;
  readonly packageName: string;
  readonly image: string;
  readonly workload: Workload;
  /** the ports the image must EXPOSE */
  readonly ports: readonly number[];
  /** whether the app exists in this checkout yet */
  readonly present: boolean;
}

function image(app: string, workload: Workload, ports: readonly number[]): ImageSpec {
  return {
    dockerfile: `docker/${app}.Dockerfile`,
    app,
    packageName: `@chiefofstate/${app}`,
    image: `chiefofstate/${app}`,
    workload,
    ports,
    present: existsSync(repoPath('apps', app, 'package.json')),
  };
}

/** Every image this repository builds; a test checks that docker/ has no other Dockerfile. */
export const IMAGES: readonly ImageSpec[] = [
  image('cos-server', 'cos', [COS_PORT, COS_METRICS_PORT]),
  image('cos-readside', 'cos', [COS_PORT, COS_METRICS_PORT]),
  image('sample-bank', 'sample-handler', [SAMPLE_BANK_PORT]),
];

export { SAMPLE_BANK_PORT };

/** The image name without its tag. */
export function imageName(reference: string): string {
  return reference.replace(/@sha256:[0-9a-f]+$/, '').replace(/:[^:/]+$/, '');
}

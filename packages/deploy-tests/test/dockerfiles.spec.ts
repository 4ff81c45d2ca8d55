// The Dockerfiles, read as Docker would: stages, the install and build commands, the runtime
// stage's user, ports, environment and HEALTHCHECK; and the build context's .dockerignore.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  isAllowedVariable,
  lastInstruction,
  parseDockerfile,
  shellWords,
  stageEnv,
  stageExposedPorts,
  stageHealthCheck,
  stageUser,
  type DockerStage,
} from '../src/index.js';
import { interpolate } from '../src/compose.js';
import { IMAGES, readRepoFile, repoPath } from './support/repo.js';
import { isIgnored, parseDockerignore } from './support/dockerignore.js';
// docker/ is not a workspace project: the script ships in the images as a plain file.
// eslint-disable-next-line @nx/enforce-module-boundaries
import { parseArguments } from '../../../docker/healthcheck.mjs';

// node:24-slim pinned by the digest of its multi-platform index: a rebuild gets the same base,
// and moving to a newer one is a visible change (docs/deployment.md says how)
const BASE = /^node:24-slim@sha256:[0-9a-f]{64}$/;

function stage(stages: readonly DockerStage[], name: string): DockerStage {
  const found = stages.find((item) => item.name === name);
  if (!found) throw new Error(`no stage ${name}`);
  return found;
}

function runs(stage: DockerStage): string[] {
  return stage.instructions.filter((item) => item.keyword === 'RUN').map((item) => item.args);
}

describe('docker/', () => {
  it('has a Dockerfile for each image and no other', () => {
    const dockerfiles = readdirSync(repoPath('docker')).filter((file) => file.endsWith('.Dockerfile'));
    expect(dockerfiles.map((file) => `docker/${file}`).sort()).toEqual(IMAGES.map((image) => image.dockerfile).sort());
  });
});

describe.each(IMAGES)('$dockerfile', (image) => {
  const dockerfile = parseDockerfile(readRepoFile(image.dockerfile));
  const runtime = dockerfile.stages.at(-1)!;
  const build = stage(dockerfile.stages, 'build');
  const deps = stage(dockerfile.stages, 'deps');

  it('uses BuildKit syntax (for the npm cache mounts) and node:24-slim pinned by digest in every stage', () => {
    expect(dockerfile.directives['syntax']).toBe('docker/dockerfile:1');
    expect(dockerfile.stages.map((item) => item.name)).toEqual(['manifests', 'build', 'deps', undefined]);
    for (const item of dockerfile.stages) expect(item.from).toMatch(BASE);
    // one base for every stage and every image
    const bases = IMAGES.flatMap((other) => parseDockerfile(readRepoFile(other.dockerfile)).stages.map((item) => item.from));
    expect(new Set(bases)).toEqual(new Set([dockerfile.stages[0]!.from]));
  });

  it('installs from the manifests first, then builds only this app with Nx', () => {
    const manifests = stage(dockerfile.stages, 'manifests');
    expect(runs(manifests)).toEqual(['node docker/workspace-tree.mjs manifests /manifests']);
    const copies = build.instructions.filter((item) => item.keyword === 'COPY');
    expect(copies[0]).toMatchObject({ flags: { from: 'manifests' }, args: '/manifests/ ./' });
    const [install, compile] = runs(build);
    expect(install).toBe('npm ci --no-audit --no-fund');
    // the sources arrive after the install, so source changes keep the install layer
    const installAt = build.instructions.findIndex((item) => item.args === install);
    const sourcesAt = build.instructions.findIndex((item) => item.keyword === 'COPY' && item.args === '. .');
    expect(sourcesAt).toBeGreaterThan(installAt);
    expect(compile).toBe(
      `npx nx run ${image.packageName}:build && node docker/workspace-tree.mjs production ${image.packageName} /prod`,
    );
  });

  it('installs only production dependencies of the app in the deps stage', () => {
    expect(deps.instructions.find((item) => item.keyword === 'COPY')).toMatchObject({
      flags: { from: 'build' },
      args: '/prod/manifests/ ./',
    });
    const [install] = runs(deps);
    const words = shellWords(install!);
    expect(words.slice(0, 2)).toEqual(['npm', 'ci']);
    expect(words).toContain('--omit=dev');
    expect(words).toContain('--ignore-scripts');
    expect(words).toContain('--include-workspace-root=false');
    expect(words[words.indexOf('--workspace') + 1]).toBe(image.packageName);
  });

  it('runs the app as a non-root user with NODE_ENV=production', () => {
    const user = stageUser(runtime);
    expect(user).toBeDefined();
    expect(user).not.toMatch(/^(root|0)(:|$)/);
    expect(user).toBe('node'); // uid 1000 in the node images: the manifests' runAsUser
    expect(stageEnv(runtime).get('NODE_ENV')).toBe('production');
    expect(lastInstruction(runtime, 'WORKDIR')?.args).toBe('/app');
    expect(lastInstruction(runtime, 'CMD')?.exec).toEqual(['node', `apps/${image.app}/dist/main.js`]);
  });

  it('copies into the runtime only the pruned dependencies, the dist directories and the health probe', () => {
    const copies = runtime.instructions.filter((item) => item.keyword === 'COPY' || item.keyword === 'ADD');
    expect(copies.map((item) => [item.flags['from'] ?? '<context>', item.args])).toEqual([
      ['deps', '/app/ ./'],
      ['build', '/prod/dist/ ./'],
      ['<context>', 'docker/healthcheck.mjs /app/healthcheck.mjs'],
    ]);
    // no install or build in the runtime stage: only preparing the data directory
    for (const command of runs(runtime)) expect(command).toMatch(/^mkdir -p \/data && chown node:node \/data$/);
  });

  it('sets only known variables', () => {
    for (const item of dockerfile.stages) {
      for (const name of stageEnv(item).keys()) expect(isAllowedVariable(image.workload, name), name).toBe(true);
    }
  });

  it(`exposes ${image.ports.join(' and ')}`, () => {
    expect(stageExposedPorts(runtime).sort()).toEqual([...image.ports].sort());
  });

  it('has a HEALTHCHECK running the shipped probe against the gRPC port', () => {
    const check = stageHealthCheck(runtime);
    expect(check).toBeDefined();
    expect(check!.options).toMatchObject({ interval: expect.any(String), timeout: expect.any(String), retries: '3' });
    // the shell form expands ${PORT:-...}; Docker runs it with the image's environment
    const words = check!.shellForm ? shellWords(interpolate(check!.command[2]!, Object.fromEntries(stageEnv(runtime)))) : [...check!.command];
    expect(words.slice(0, 2)).toEqual(['node', '/app/healthcheck.mjs']);
    const options = parseArguments(words.slice(2), Object.fromEntries(stageEnv(runtime)));
    expect(options.port).toBe(image.ports[0]);
    expect(options.acceptUnimplemented).toBe(image.workload !== 'cos');
  });

  if (image.workload === 'cos') {
    it('keeps the embedded store in a COS_DATA_DIR volume the node user owns', () => {
      const dataDir = stageEnv(runtime).get('COS_DATA_DIR');
      expect(dataDir).toBe('/data');
      expect(JSON.parse(lastInstruction(runtime, 'VOLUME')!.args)).toEqual([dataDir]);
      const chownAt = runtime.instructions.findIndex((item) => item.keyword === 'RUN' && item.args.includes(`chown node:node ${dataDir}`));
      const userAt = runtime.instructions.findIndex((item) => item.keyword === 'USER');
      expect(chownAt).toBeGreaterThanOrEqual(0);
      expect(chownAt).toBeLessThan(userAt);
    });
  }

  it.runIf(image.present)('matches the app: its package name and the entry point dist/main.js built from src/main.ts', () => {
    const manifest = JSON.parse(readRepoFile('apps', image.app, 'package.json')) as {
      name: string;
      scripts?: Record<string, string>;
      bin?: Record<string, string>;
    };
    expect(manifest.name).toBe(image.packageName);
    expect(existsSync(repoPath('apps', image.app, 'src', 'main.ts'))).toBe(true);
    const entries = [manifest.scripts?.['start'], ...Object.values(manifest.bin ?? {})].filter(Boolean).join(' ');
    expect(entries).toMatch(/dist\/main\.js/);
  });
});

describe('.dockerignore', () => {
  const patterns = parseDockerignore(readFileSync(repoPath('.dockerignore'), 'utf8'));

  it.each([
    'node_modules/vitest/package.json',
    'packages/core/node_modules/x/index.js',
    'packages/core/dist/index.js',
    'apps/cos-server/dist/main.js',
    'packages/core/dist/.tsbuildinfo',
    '.git/HEAD',
    '.nx/cache/x',
    'apps/cos-server/test-results/vitest.json',
    '.cos-data/PG_VERSION',
    'apps/quickstart/.cos-data/base/1',
    '.env',
    'docker/cos-server.Dockerfile',
    'deploy/kubernetes/standalone/secret.yaml',
  ])('keeps %s out of the build context', (path) => {
    expect(isIgnored(path, patterns)).toBe(true);
  });

  it.each([
    'package.json',
    'package-lock.json',
    'nx.json',
    'tsconfig.base.json',
    'docker/healthcheck.mjs',
    'docker/workspace-tree.mjs',
    'packages/core/package.json',
    'packages/core/src/index.ts',
    'packages/core/tsconfig.lib.json',
    'apps/cos-server/src/main.ts',
    'packages/protocol/src/gen/chief_of_state/v1/common_pb.ts',
  ])('sends %s', (path) => {
    expect(isIgnored(path, patterns)).toBe(false);
  });
});

// docker/workspace-tree.mjs: which workspace packages an image gets, and the manifests its
// installs run on; against a fixture workspace and against this repository.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { IMAGES, REPO_ROOT, repoPath } from './support/repo.js';
// docker/ is not a workspace project: the script ships with the images' build context.
// eslint-disable-next-line @nx/enforce-module-boundaries
import { listWorkspaces, productionClosure, writeManifests, writeProductionTree } from '../../../docker/workspace-tree.mjs';

const run = promisify(execFile);
const temporary: string[] = [];
afterAll(() => {
  for (const dir of temporary) rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'cos-workspace-tree-'));
  temporary.push(dir);
  return dir;
}

function write(root: string, path: string, content: unknown): void {
  mkdirSync(dirname(join(root, path)), { recursive: true });
  writeFileSync(join(root, path), typeof content === 'string' ? content : JSON.stringify(content, null, 2));
}

/** a -> b (dependency), a -> c (devDependency), b -> d (peer), d -> b (a cycle), e unrelated */
function fixture(): string {
  const root = tempDir();
  write(root, 'package.json', { name: 'root', private: true, workspaces: ['packages/*', 'apps/*', 'tools'] });
  write(root, 'package-lock.json', { lockfileVersion: 3 });
  write(root, 'apps/a/package.json', {
    name: '@x/a',
    dependencies: { '@x/b': '^1.0.0', pino: '^10.0.0' },
    devDependencies: { '@x/c': '^1.0.0', vitest: '4' },
  });
  write(root, 'packages/b/package.json', { name: '@x/b', peerDependencies: { '@x/d': '*' }, devDependencies: { '@x/e': '*' } });
  write(root, 'packages/c/package.json', { name: '@x/c' });
  write(root, 'packages/d/package.json', { name: '@x/d', dependencies: { '@x/b': '*' } });
  write(root, 'packages/e/package.json', { name: '@x/e' });
  write(root, 'packages/not-a-package/README.md', 'no package.json here');
  write(root, 'tools/package.json', { name: '@x/tools', dependencies: { '@x/a': '*' } });
  for (const dir of ['apps/a', 'packages/b', 'packages/c', 'packages/d']) write(root, `${dir}/dist/index.js`, `// ${dir}`);
  return root;
}

describe('on a fixture workspace', () => {
  it('lists the workspaces of the root manifest, skipping folders without package.json', () => {
    expect(listWorkspaces(fixture()).map((workspace) => [workspace.name, workspace.dir])).toEqual([
      ['@x/b', 'packages/b'],
      ['@x/c', 'packages/c'],
      ['@x/d', 'packages/d'],
      ['@x/e', 'packages/e'],
      ['@x/a', 'apps/a'],
      ['@x/tools', 'tools'],
    ]);
  });

  it('follows production and peer dependencies, through cycles, but not devDependencies', () => {
    const closure = productionClosure(listWorkspaces(fixture()), '@x/a');
    expect(closure.map((workspace) => workspace.name)).toEqual(['@x/a', '@x/b', '@x/d']);
  });

  it('refuses an unknown app', () => {
    expect(() => productionClosure(listWorkspaces(fixture()), '@x/nope')).toThrow(/@x\/nope is not a workspace package/);
  });

  it('writes the closure: manifests without devDependencies, and dist directories', () => {
    const root = fixture();
    const out = join(tempDir(), 'prod');
    writeProductionTree(root, '@x/a', out);
    const manifest = JSON.parse(readFileSync(join(out, 'manifests/apps/a/package.json'), 'utf8'));
    expect(manifest).toEqual({ name: '@x/a', dependencies: { '@x/b': '^1.0.0', pino: '^10.0.0' } });
    expect(existsSync(join(out, 'manifests/packages/b/package.json'))).toBe(true);
    expect(existsSync(join(out, 'manifests/packages/c'))).toBe(false);
    expect(existsSync(join(out, 'manifests/tools'))).toBe(false);
    expect(readFileSync(join(out, 'manifests/package-lock.json'), 'utf8')).toBe(readFileSync(join(root, 'package-lock.json'), 'utf8'));
    expect(readdirSync(join(out, 'dist/packages'))).toEqual(['b', 'd']);
    expect(readFileSync(join(out, 'dist/packages/d/dist/index.js'), 'utf8')).toBe('// packages/d');
  });

  it('stops when a package of the closure is not built', () => {
    const root = fixture();
    rmSync(join(root, 'packages/d/dist'), { recursive: true });
    expect(() => writeProductionTree(root, '@x/a', join(tempDir(), 'prod'))).toThrow(/not built: packages\/d/);
  });

  it('writes every manifest, unchanged, for the full install', () => {
    const root = fixture();
    const out = tempDir();
    writeManifests(root, out);
    for (const dir of ['apps/a', 'packages/b', 'packages/c', 'packages/d', 'packages/e', 'tools']) {
      expect(readFileSync(join(out, dir, 'package.json'), 'utf8')).toBe(readFileSync(join(root, dir, 'package.json'), 'utf8'));
    }
    expect(existsSync(join(out, 'packages/not-a-package'))).toBe(false);
    expect(existsSync(join(out, 'apps/a/dist'))).toBe(false);
  });

  it('works as the command line the Dockerfiles run, and explains misuse', async () => {
    const root = fixture();
    const out = join(tempDir(), 'prod');
    const script = repoPath('docker/workspace-tree.mjs');
    const { stdout } = await run(process.execPath, [script, 'production', '@x/a', out], { cwd: root });
    expect(stdout).toBe('workspace packages for @x/a: apps/a packages/b packages/d\n');
    await expect(run(process.execPath, [script, 'production'], { cwd: root })).rejects.toMatchObject({
      code: 2,
      stderr: expect.stringContaining('usage:'),
    });
    await expect(run(process.execPath, [script, 'production', '@x/zz', out], { cwd: root })).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringContaining('@x/zz is not a workspace package'),
    });
  });
});

describe('on this repository', () => {
  it('lists the same workspaces as npm', async () => {
    const { stdout } = await run('npm', ['query', '.workspace', '--json'], { cwd: REPO_ROOT, maxBuffer: 64 * 1024 * 1024 });
    const fromNpm = (JSON.parse(stdout) as { name: string; location: string }[]).map((item) => [item.name, item.location]);
    const ours = listWorkspaces(REPO_ROOT).map((workspace) => [workspace.name, workspace.dir]);
    expect(ours.sort()).toEqual(fromNpm.sort());
  });

  /** The @chiefofstate packages a workspace's sources import (not its tests). */
  function importedWorkspaces(dir: string): Set<string> {
    const found = new Set<string>();
    const visit = (path: string) => {
      for (const entry of readdirSync(path, { withFileTypes: true })) {
        const child = join(path, entry.name);
        if (entry.isDirectory()) {
          if (entry.name !== 'test-support' && entry.name !== 'node_modules') visit(child);
        } else if (/\.ts$/.test(entry.name) && !/\.spec\.ts$/.test(entry.name)) {
          for (const match of readFileSync(child, 'utf8').matchAll(/from '(@chiefofstate\/[a-z-]+)'/g)) found.add(match[1]!);
        }
      }
    };
    visit(join(REPO_ROOT, dir, 'src'));
    return found;
  }

  it.each(IMAGES.filter((image) => image.present))(
    'gives $packageName exactly the workspace packages its sources import, transitively',
    (image) => {
      const workspaces = listWorkspaces(REPO_ROOT);
      const closure = productionClosure(workspaces, image.packageName);
      const names = new Set(closure.map((workspace) => workspace.name));
      // complete: whatever a package of the closure imports is in the closure
      for (const workspace of closure) {
        for (const imported of importedWorkspaces(workspace.dir)) expect(names, `${workspace.name} imports ${imported}`).toContain(imported);
      }
      // no more: every package besides the app is imported by another one of the closure, or by
      // the health probe every image ships (docker/healthcheck.mjs)
      const probe = readFileSync(join(REPO_ROOT, 'docker/healthcheck.mjs'), 'utf8');
      const imported = new Set([
        ...closure.flatMap((workspace) => [...importedWorkspaces(workspace.dir)]),
        ...[...probe.matchAll(/from '(@chiefofstate\/[a-z-]+)(?:\/[a-z-]+)?'/g)].map((match) => match[1]!),
      ]);
      for (const name of names) if (name !== image.packageName) expect(imported, `${name} is in the closure but imported by none`).toContain(name);
      expect(names).not.toContain('@chiefofstate/testing');
      expect(names).not.toContain('@chiefofstate/tools');
    },
  );
});

// docs/deployment.md: the variable table against CONFIG_VARIABLES, the generator script, and
// the page (and the root README) naming what the deployment files contain.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { CONFIG_VARIABLES } from '@chiefofstate/config';
import { COMMON_VARIABLES, OTHER_VARIABLES } from '../src/index.js';
import { COS_METRICS_PORT, COS_PORT, IMAGES, REPO_ROOT, readRepoFile, repoPath } from './support/repo.js';

const run = promisify(execFile);
const page = readRepoFile('docs/deployment.md');
const temporary: string[] = [];
afterAll(() => {
  for (const dir of temporary) rmSync(dir, { recursive: true, force: true });
});

/** The cells of a Markdown table row, `\|` unescaped. */
function cells(row: string): string[] {
  return row
    .replace(/^\|/, '')
    .replace(/\|$/, '')
    .split(/(?<!\\)\|/)
    .map((cell) => cell.trim().replaceAll('\\|', '|'));
}

function section(text: string, start: string, end: string): string {
  const from = text.indexOf(start);
  const to = text.indexOf(end, from);
  if (from < 0 || to < 0) throw new Error(`no ${start} ... ${end}`);
  return text.slice(from + start.length, to);
}

const unquote = (cell: string) => cell.replace(/^`|`$/g, '');

function variablesScript(args: string[]) {
  return run(process.execPath, ['--conditions=@chiefofstate/source', '--import', 'tsx', 'tools/scripts/variables-table.ts', ...args], {
    cwd: REPO_ROOT,
    env: { PATH: process.env['PATH'] ?? '' },
  });
}

describe('the variable table of docs/deployment.md', () => {
  const rows = section(page, '<!-- variables:start -->', '<!-- variables:end -->').trim().split('\n');

  it('has a row for every variable of CONFIG_VARIABLES, in order, with its aliases, default and meaning', () => {
    expect(cells(rows[0]!)).toEqual(['variable', 'alias', 'default', 'meaning']);
    const body = rows.slice(2).map(cells);
    expect(body.map((row) => unquote(row[0]!))).toEqual(CONFIG_VARIABLES.map((variable) => variable.name));
    for (const [index, variable] of CONFIG_VARIABLES.entries()) {
      const [, aliases, fallback, meaning] = body[index]!;
      expect(aliases === '' ? [] : aliases!.split(', ').map(unquote), variable.name).toEqual(variable.aliases);
      expect(fallback, variable.name).toBe(variable.default);
      expect(meaning, variable.name).toBe(variable.meaning);
    }
  });

  it('is what tools/scripts/variables-table.ts writes (--check passes)', async () => {
    await expect(variablesScript(['--check'])).resolves.toMatchObject({ stderr: '' });
  });

  it('--check fails on a stale table, and a run rewrites it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cos-docs-'));
    temporary.push(dir);
    const file = join(dir, 'page.md');
    const stale = page.replace(/^\| `COS_PORT` \|[^\n]*\n/m, '');
    expect(stale).not.toBe(page);
    writeFileSync(file, stale);
    await expect(variablesScript(['--check', file])).rejects.toMatchObject({ code: 1, stderr: expect.stringContaining('out of date') });
    await variablesScript([file]);
    expect(readFileSync(file, 'utf8')).toBe(page);
  });
});

describe('docs/deployment.md', () => {
  it('documents every variable the deployment files may set besides COS own', () => {
    const names = [...COMMON_VARIABLES, ...Object.values(OTHER_VARIABLES).flat(), 'OTEL_*'];
    for (const name of names) expect(page, name).toContain(`\`${name}\``);
  });

  it('names every deployment file and directory', () => {
    const paths = [
      ...IMAGES.map((image) => image.dockerfile),
      'docker/compose.yaml',
      'docker/healthcheck.mjs',
      'docker/workspace-tree.mjs',
      '.dockerignore',
      'deploy/kubernetes/standalone',
      'deploy/kubernetes/readside',
      'deploy/kubernetes/sidecar',
      'deploy/kubernetes/tls',
    ];
    for (const path of paths) expect(page, path).toContain(`\`${path}`);
  });

  it('gives the ports their defaults', () => {
    const ports = section(page, '## Ports', '\n## ').split('\n').filter((line) => /^\| \d/.test(line)).map(cells);
    const byVariable = Object.fromEntries(ports.map((row) => [unquote(row[1]!), Number(row[0])]));
    expect(byVariable['COS_PORT']).toBe(COS_PORT);
    expect(byVariable['COS_METRICS_PORT']).toBe(COS_METRICS_PORT);
    expect(byVariable['TRACE_PORT']).toBe(Number(CONFIG_VARIABLES.find((variable) => variable.name === 'TRACE_PORT')!.default));
  });

  it('is linked from the root README layout table, with docker/ and deploy/', () => {
    const readme = readFileSync(repoPath('README.md'), 'utf8');
    const layout = section(readme, '## Layout', '\n## ');
    const paths = layout
      .split('\n')
      .filter((line) => line.startsWith('| `'))
      .map((line) => unquote(cells(line)[0]!));
    expect(paths).toEqual(expect.arrayContaining(['docker/', 'deploy/', 'docs/deployment.md']));
  });
});

// The images' production install, for real, without Docker: the Dockerfile's deps and runtime
// stages are replayed in a temporary directory (each stage's `/` mapped to a folder of its own),
// running the Dockerfile's own commands: workspace-tree.mjs production on the built workspace,
// the deps stage's `npm ci --omit=dev ...`, the runtime stage's COPYs. Then the app starts from
// that pruned tree with the image's ENV and CMD, and the image's HEALTHCHECK command must pass.
// (Node here is this machine's, not the image's Node 24.)
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startProcess, type RunningProcess } from '@chiefofstate/testing';
import {
  lastInstruction,
  parseDockerfile,
  shellWords,
  stageEnv,
  stageHealthCheck,
  type DockerStage,
} from '../src/index.js';
import { IMAGES, REPO_ROOT, readRepoFile, type ImageSpec } from './support/repo.js';
// eslint-disable-next-line @nx/enforce-module-boundaries -- docker/ is no workspace project
import { listWorkspaces, productionClosure } from '../../../docker/workspace-tree.mjs';

const temporary: string[] = [];
// the pruned trees hold whole node_modules: removing them took over the default 60 s on a loaded machine
afterAll(() => {
  for (const dir of temporary) rmSync(dir, { recursive: true, force: true });
}, 300_000);

/** Runs a command to completion; resolves with its exit code and output. */
function execute(command: string, args: readonly string[], options: { cwd: string; env: NodeJS.ProcessEnv }) {
  return new Promise<{ code: number; output: string }>((resolve, reject) => {
    const child = spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.once('error', reject);
    child.once('exit', (code) => resolve({ code: code ?? -1, output }));
  });
}

const baseEnv = (): NodeJS.ProcessEnv => ({ PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '' });

/** One stage's filesystem, `/` mapped to a folder. */
class StageFs {
  workdir = '/';
  readonly env = new Map<string, string>();
  constructor(readonly root: string) {
    mkdirSync(root, { recursive: true });
  }
  path(path: string): string {
    return join(this.root, isAbsolute(path) ? path : join(this.workdir, path));
  }
}

/**
 * Replays a stage's WORKDIR, ENV, COPY and RUN instructions. RUN commands run with `sh -c` in
 * the mapped WORKDIR; `runCommand` may rewrite or skip them (it returns undefined to skip).
 */
async function replay(
  stage: DockerStage,
  fs: StageFs,
  sources: { context: string; stages: Record<string, StageFs> },
  runCommand: (command: string) => string | undefined,
): Promise<void> {
  for (const instruction of stage.instructions) {
    if (instruction.keyword === 'WORKDIR') {
      fs.workdir = instruction.args;
      mkdirSync(fs.path('.'), { recursive: true });
    } else if (instruction.keyword === 'ENV') {
      for (const [name, value] of stageEnv({ ...stage, instructions: [instruction] })) fs.env.set(name, value);
    } else if (instruction.keyword === 'COPY') {
      const words = instruction.exec ?? shellWords(instruction.args);
      const destination = fs.path(words.at(-1)!);
      const from = instruction.flags['from'];
      for (const source of words.slice(0, -1)) {
        const origin = from ? sources.stages[from]!.path(source) : join(sources.context, source);
        cpSync(origin, destination, { recursive: true, verbatimSymlinks: true });
      }
    } else if (instruction.keyword === 'RUN') {
      const command = runCommand(instruction.args);
      if (command === undefined) continue;
      const result = await execute('sh', ['-c', command], {
        cwd: fs.path('.'),
        // the npm cache of this machine, as the Dockerfile's cache mount would be
        env: { ...baseEnv(), ...Object.fromEntries(fs.env), npm_config_prefer_offline: 'true' },
      });
      if (result.code !== 0) throw new Error(`RUN ${command} failed (${result.code}):\n${result.output}`);
    } else if (!['LABEL', 'USER', 'EXPOSE', 'VOLUME', 'HEALTHCHECK', 'CMD'].includes(instruction.keyword)) {
      throw new Error(`line ${instruction.line}: ${instruction.keyword} is not replayed by this test`);
    }
  }
}

function stageNamed(stages: readonly DockerStage[], name: string): DockerStage {
  return stages.find((stage) => stage.name === name)!;
}

const APP_START_MS = 90_000;

describe.each(IMAGES.filter((image) => image.present))('the production tree of $dockerfile', (image: ImageSpec) => {
  const dockerfile = parseDockerfile(readRepoFile(image.dockerfile));
  const root = mkdtempSync(join(tmpdir(), `cos-image-${image.app}-`));
  temporary.push(root);
  const stages: Record<string, StageFs> = {
    build: new StageFs(join(root, 'build')),
    deps: new StageFs(join(root, 'deps')),
  };
  const runtime = new StageFs(join(root, 'runtime'));
  let app: RunningProcess | undefined;
  let containerEnv: Record<string, string> = {};

  beforeAll(async () => {
    const built = [...productionClosure(listWorkspaces(REPO_ROOT), image.packageName)].filter(
      (workspace) => !existsSync(join(REPO_ROOT, workspace.dir, 'dist')),
    );
    if (built.length > 0) throw new Error(`build first (nx runs this test after ^build): ${built.map((item) => item.dir).join(', ')}`);

    // build stage: only its last command, on this checkout's build
    const buildRun = stageNamed(dockerfile.stages, 'build').instructions.filter((item) => item.keyword === 'RUN').at(-1)!;
    const collect = buildRun.args.split('&&').map((part) => part.trim()).find((part) => part.startsWith('node docker/workspace-tree.mjs production'))!;
    const words = shellWords(collect).map((word) => (word === '/prod' ? stages['build']!.path('/prod') : word));
    const collected = await execute(process.execPath, words.slice(1), { cwd: REPO_ROOT, env: baseEnv() });
    expect(collected.code, collected.output).toBe(0);

    await replay(stageNamed(dockerfile.stages, 'deps'), stages['deps']!, { context: REPO_ROOT, stages }, (command) => command);
    const final = dockerfile.stages.at(-1)!;
    await replay(final, runtime, { context: REPO_ROOT, stages }, (command) => {
      // the only RUN of the runtime stage prepares the data directory as root
      expect(command).toBe('mkdir -p /data && chown node:node /data');
      mkdirSync(runtime.path('/data'), { recursive: true });
      return undefined;
    });

    const port = await freePort();
    const mapped = Object.fromEntries([...runtime.env].map(([name, value]) => [name, value.startsWith('/') ? runtime.path(value) : value]));
    containerEnv =
      image.workload === 'cos'
        ? {
            ...mapped,
            COS_PORT: String(port),
            COS_METRICS_PORT: String(await freePort()),
            COS_ADDRESS: '127.0.0.1',
            WRITE_SIDE_HANDLER_SERVICE_HOST: '127.0.0.1',
            WRITE_SIDE_HANDLER_SERVICE_PORT: String(await freePort()),
            // cos-readside runs the read sides, which need a handler (not called without events)
            READ_SIDE_HANDLER_SERVICE_HOST: '127.0.0.1',
            READ_SIDE_HANDLER_SERVICE_PORT: String(await freePort()),
          }
        : { ...mapped, PORT: String(port), HOST: '127.0.0.1' };
  }, 300_000);

  afterAll(async () => {
    await app?.kill('SIGKILL');
  });

  /** The image's HEALTHCHECK command, with `/app` mapped into the replayed runtime. */
  function healthCheck() {
    const check = stageHealthCheck(dockerfile.stages.at(-1)!)!;
    const mapPaths = (word: string) => word.replaceAll('/app/', `${runtime.path('/app')}/`);
    const [command, ...args] = check.command.map(mapPaths);
    return execute(command === 'node' ? process.execPath : command!, args, { cwd: runtime.path('.'), env: { ...baseEnv(), ...containerEnv } });
  }

  it('holds only the production dependencies of the app and the workspace packages it uses', () => {
    const closure = productionClosure(listWorkspaces(REPO_ROOT), image.packageName);
    const linked = readdirSync(runtime.path('node_modules/@chiefofstate')).map((name) => `@chiefofstate/${name}`);
    expect(linked.sort()).toEqual(closure.map((workspace) => workspace.name).sort());
    for (const devOnly of ['vitest', 'typescript', 'nx', 'tsx', '@chiefofstate/testing', '@types/node', 'eslint']) {
      expect(existsSync(runtime.path(join('node_modules', devOnly))), devOnly).toBe(false);
    }
    // workspace packages arrive built: package.json and dist/, no sources
    for (const workspace of closure) {
      expect(readdirSync(runtime.path(workspace.dir)).sort()).toEqual(['dist', 'package.json']);
    }
  });

  it(
    'starts from the pruned tree with the image CMD, and the HEALTHCHECK passes once it serves',
    async () => {
      const before = await healthCheck();
      expect(before.code, 'healthy before the app runs').toBe(1);

      const [command, ...args] = lastInstruction(dockerfile.stages.at(-1)!, 'CMD')!.exec!;
      expect(command).toBe('node');
      app = startProcess(process.execPath, args, containerEnv, { cwd: runtime.path('.') });

      const deadline = Date.now() + APP_START_MS;
      let last = before;
      while (Date.now() < deadline) {
        last = await healthCheck();
        if (last.code === 0) break;
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
      expect(last.code, `${last.output}\napp output:\n${app.output()}`).toBe(0);
      expect(last.output).toMatch(image.workload === 'cos' ? /server is SERVING/ : /answers gRPC/);

      if (image.workload === 'cos') {
        // the operations port the manifests scrape and document: COS_METRICS_PORT
        const base = `http://127.0.0.1:${containerEnv['COS_METRICS_PORT']}`;
        expect((await fetch(`${base}/healthz`)).status).toBe(200);
        const metrics = await fetch(`${base}/metrics`);
        expect(metrics.status).toBe(200);
        expect(await metrics.text()).toMatch(/^# HELP cos_/m);
        // answers (what readiness means is each app's own business)
        expect([200, 503]).toContain((await fetch(`${base}/readyz`)).status);
      }

      // graceful stop, as on `docker stop`
      expect(await app.kill('SIGTERM')).toBe(0);
      expect((await healthCheck()).code).toBe(1);
    },
    APP_START_MS + 30_000,
  );
});

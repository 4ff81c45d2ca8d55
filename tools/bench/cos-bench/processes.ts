// The benchmark's processes (spawned with a clean environment, killed when this one exits), ports,
// and what /proc says of their CPU and memory.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export { freePort } from '@chiefofstate/testing';

export const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const HERE = fileURLToPath(new URL('.', import.meta.url));

export interface Proc {
  readonly name: string;
  readonly child: ChildProcess;
  output(): string;
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  stop(): Promise<void>;
}

const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130));

export function start(name: string, args: string[], env: Record<string, string>, ipc = false): Proc {
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '', ...env },
    stdio: ipc ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let output = '';
  const wakers = new Set<() => void>();
  const append = (chunk: Buffer) => {
    // keep the tail only: the server logs at info level
    output = (output + chunk.toString()).slice(-20_000);
    for (const wake of [...wakers]) wake();
  };
  child.stdout!.on('data', append);
  child.stderr!.on('data', append);
  let exited = false;
  const exit = new Promise<void>((resolve) =>
    child.once('exit', () => {
      exited = true;
      children.delete(child);
      for (const wake of [...wakers]) wake();
      resolve();
    }),
  );
  return {
    name,
    child,
    output: () => output,
    waitFor(pattern, timeoutMs = 60_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => done(new Error(`${name}: timed out waiting for ${pattern}:\n${output}`)), timeoutMs);
        const done = (error?: Error, match?: RegExpMatchArray) => {
          wakers.delete(check);
          clearTimeout(timer);
          if (error) reject(error);
          else resolve(match!);
        };
        const check = () => {
          const match = output.match(pattern);
          if (match) done(undefined, match);
          else if (exited) done(new Error(`${name} exited before ${pattern}:\n${output}`));
        };
        wakers.add(check);
        check();
      });
    },
    async stop() {
      if (exited) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 12_000);
      await exit;
      clearTimeout(timer);
    },
  };
}

/** node arguments running one of the benchmark's own processes (handler.ts, ceiling.ts, ...) */
export const tsx = (file: string): string[] => ['--import', 'tsx', path.join(HERE, file)];
/** node arguments writing a CPU profile into `dir` (--cpu-prof), none without one */
export const profile = (dir: string | undefined, name: string): string[] =>
  dir ? ['--cpu-prof', `--cpu-prof-dir=${dir}`, `--cpu-prof-name=${name}.cpuprofile`] : [];

export const sleep = (ms: number): Promise<unknown> => new Promise((resolve) => setTimeout(resolve, ms));

// ---- /proc ---------------------------------------------------------------------------------

export const TICK_MS = 1000 / 100; // USER_HZ; 100 on Linux

export function cpuTicks(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return 0;
  }
}

export function rssMiB(pid: number | undefined): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? Number.NaN);
  return kb / 1024;
}

import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';

/**
 * Real child processes for end-to-end tests: spawn, read their output, wait for a line, kill
 * them (SIGTERM, or SIGKILL for crash tests). The environment is only PATH and HOME plus what
 * the test passes, so nothing leaks in from the developer's shell.
 */

/** A free TCP port on loopback. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

export interface RunningProcess {
  readonly child: ChildProcess;
  /** everything written to stdout and stderr so far */
  output(): string;
  /** resolves with the exit code (or signal) */
  readonly exited: Promise<number | NodeJS.Signals>;
  /** waits until the output matches */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  kill(signal?: NodeJS.Signals): Promise<number | NodeJS.Signals>;
}

export function startProcess(
  command: string,
  args: string[],
  env: Record<string, string>,
  options: { cwd?: string } = {},
): RunningProcess {
  const child = spawn(command, args, {
    ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
    env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const waiters = new Set<() => void>();
  const append = (chunk: Buffer) => {
    output += chunk.toString();
    for (const wake of [...waiters]) wake();
  };
  child.stdout!.on('data', append);
  child.stderr!.on('data', append);
  // 'close', not 'exit': 'exit' can come before the last output has been read from the pipes.
  const exited = new Promise<number | NodeJS.Signals>((resolve) =>
    child.once('close', (code, signal) => {
      resolve(code ?? signal ?? -1);
      for (const wake of [...waiters]) wake();
    }),
  );
  let exitedValue: number | NodeJS.Signals | undefined;
  void exited.then((v) => (exitedValue = v));
  return {
    child,
    output: () => output,
    exited,
    waitFor(pattern, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const match = output.match(pattern);
          if (match) {
            waiters.delete(check);
            clearTimeout(timer);
            resolve(match);
          } else if (exitedValue !== undefined) {
            waiters.delete(check);
            clearTimeout(timer);
            reject(new Error(`process exited (${exitedValue}) before ${pattern}:\n${output}`));
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`timed out waiting for ${pattern}:\n${output}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    async kill(signal = 'SIGTERM') {
      if (exitedValue === undefined) child.kill(signal);
      return exited;
    },
  };
}

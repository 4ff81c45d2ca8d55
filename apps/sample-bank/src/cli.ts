#!/usr/bin/env node
// The bank CLI as a process: `node dist/cli.js deposit acc-1 100` (see run-cli.ts / README).
import { runCli } from './run-cli.js';

// Ctrl-C (or SIGTERM) ends a watch cleanly, exit code 0
const interrupted = new AbortController();
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => interrupted.abort());

process.exitCode = await runCli(process.argv.slice(2), {
  env: process.env,
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  signal: interrupted.signal,
});

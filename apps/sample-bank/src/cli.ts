#!/usr/bin/env node
// The bank CLI as a process: `node dist/cli.js deposit acc-1 100` (see run-cli.ts / README).
import { runCli } from './run-cli.js';

process.exitCode = await runCli(process.argv.slice(2), {
  env: process.env,
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
});

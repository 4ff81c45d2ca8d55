import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * Workspace packages resolve to their TypeScript sources only under the `@chiefofstate/source`
 * export condition: without it, re-runs the benchmark script under it (with tsx) and exits with
 * its status. Call it before importing any workspace package.
 */
export function rerunWithSources(scriptUrl: string): void {
  if (process.execArgv.some((arg) => arg.includes('@chiefofstate/source'))) return;
  const result = spawnSync(
    process.execPath,
    ['--conditions=@chiefofstate/source', '--import', 'tsx', fileURLToPath(scriptUrl), ...process.argv.slice(2)],
    { stdio: 'inherit' },
  );
  process.exit(result.status ?? 1);
}

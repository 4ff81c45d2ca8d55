import { fileURLToPath } from 'node:url';
import { startProcess, type RunningProcess } from '@chiefofstate/testing';

export { freePort, type RunningProcess } from '@chiefofstate/testing';

export const APP_ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** The built cos-server (`npm run build` first; the Nx test target depends on it). */
export function startCosServerProcess(env: Record<string, string>): RunningProcess {
  return startProcess(process.execPath, [`${APP_ROOT}/dist/main.js`], { LOG_LEVEL: 'info', ...env }, { cwd: APP_ROOT });
}

/** The programmable stock grpc-js write handler, as its own process. */
export async function startTestHandler(port = 0): Promise<RunningProcess & { port: number }> {
  const handler = startProcess(process.execPath, ['--import', 'tsx', `${APP_ROOT}/test/support/test-write-handler.ts`], {
    PORT: String(port),
    // resolve workspace packages to their sources, like the tests do
    NODE_OPTIONS: '--conditions=@chiefofstate/source',
  }, { cwd: APP_ROOT });
  const match = await handler.waitFor(/listening (\d+)/);
  return Object.assign(handler, { port: Number(match[1]) });
}

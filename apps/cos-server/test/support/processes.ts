import { fileURLToPath } from 'node:url';
import { startProcess, type RunningProcess } from '@chiefofstate/testing';

export { freePort, type RunningProcess } from '@chiefofstate/testing';

export const APP_ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** The built cos-server (`npm run build` first; the Nx test target depends on it). */
export function startCosServerProcess(env: Record<string, string>): RunningProcess {
  return startProcess(process.execPath, [`${APP_ROOT}/dist/main.js`], { LOG_LEVEL: 'info', ...env }, { cwd: APP_ROOT });
}

/** The programmable stock grpc-js write handler, as its own process. */
export function startTestHandler(port = 0, env: Record<string, string> = {}): Promise<RunningProcess & { port: number }> {
  return startSupportProcess('test-write-handler.ts', { PORT: String(port), ...env });
}

/** The write and read-side handler speaking only HTTP/JSON (http-handler.ts); TLS with CERT_FILE/KEY_FILE. */
export function startHttpHandler(env: Record<string, string> = {}): Promise<RunningProcess & { port: number }> {
  return startSupportProcess('http-handler.ts', { PORT: '0', ...env });
}

/** A write handler that traces with OpenTelemetry and exports to `tracesEndpoint`. */
export function startTracedHandler(tracesEndpoint: string): Promise<RunningProcess & { port: number }> {
  return startSupportProcess('traced-write-handler.ts', { PORT: '0', TRACES_ENDPOINT: tracesEndpoint });
}

async function startSupportProcess(file: string, env: Record<string, string>): Promise<RunningProcess & { port: number }> {
  const child = startProcess(
    process.execPath,
    ['--import', 'tsx', `${APP_ROOT}/test/support/${file}`],
    // resolve workspace packages to their sources, like the tests do
    { ...env, NODE_OPTIONS: '--conditions=@chiefofstate/source' },
    { cwd: APP_ROOT },
  );
  const match = await child.waitFor(/listening (\d+)/);
  return Object.assign(child, { port: Number(match[1]) });
}

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { bearerToken, watchTokenFile, type TokenSet, type WatchedFiles } from '@chiefofstate/tls';
import type { CosMetrics } from './cos-metrics.js';

export interface MetricsServerOptions {
  readonly host: string;
  /** COS_METRICS_PORT; 0 picks a free port */
  readonly port: number;
  readonly metrics: CosMetrics;
  /** readiness: the store is migrated and the handlers are reachable */
  readonly ready: () => Readiness | Promise<Readiness>;
  /**
   * COS_METRICS_TOKEN_FILE: bearer tokens (one per line) /metrics asks for; /healthz and
   * /readyz stay open for the kubelet. Read now (a broken file is a ConfigError) and re-read.
   */
  readonly tokenFile?: string | undefined;
  /** how often the token file is read again, ms; 0 never (COS_TLS_RELOAD_INTERVAL) */
  readonly reloadIntervalMs?: number;
  /** a changed token file that cannot be used (the previous tokens stay) */
  readonly onReloadError?: (error: unknown) => void;
}

/** Ready or not; when not, optionally why (shown in the /readyz body). */
export type Readiness = boolean | { readonly ready: boolean; readonly reason?: string };

export interface MetricsServer {
  readonly port: number;
  close(): Promise<void>;
}

/**
 * The operations HTTP port: `GET /metrics` (Prometheus text format; with a token file, only for
 * a listed bearer token: else 401 with `WWW-Authenticate: Bearer`), `GET /healthz` (liveness:
 * the process answers) and `GET /readyz` (readiness: 200 only when ready, else 503).
 */
export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const tokens: WatchedFiles<TokenSet> | undefined =
    options.tokenFile === undefined
      ? undefined
      : watchTokenFile({
          path: options.tokenFile,
          ...(options.reloadIntervalMs !== undefined ? { intervalMs: options.reloadIntervalMs } : {}),
          ...(options.onReloadError ? { onError: options.onReloadError } : {}),
        });
  const server: Server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    const answer = (status: number, body: string, type = 'text/plain; charset=utf-8') => {
      response.writeHead(status, { 'content-type': type }).end(body);
    };
    if (request.method !== 'GET' && request.method !== 'HEAD') return answer(405, 'method not allowed\n');
    if (path === '/metrics') {
      if (tokens && !tokens.current().accepts(bearerToken(request.headers.authorization) ?? '')) {
        response.writeHead(401, { 'content-type': 'text/plain; charset=utf-8', 'www-authenticate': 'Bearer realm="metrics"' });
        response.end('a bearer token is required\n');
        return;
      }
      options.metrics.scrape().then(
        (text) => answer(200, text, options.metrics.registry.contentType),
        (error: unknown) => answer(500, `metrics failed: ${String(error)}\n`),
      );
    } else if (path === '/healthz') {
      answer(200, 'ok\n');
    } else if (path === '/readyz') {
      Promise.resolve()
        .then(options.ready)
        .then(
          (readiness) => {
            const ready = typeof readiness === 'boolean' ? readiness : readiness.ready;
            const reason = typeof readiness === 'boolean' || readiness.reason === undefined ? '' : `: ${readiness.reason}`;
            answer(ready ? 200 : 503, ready ? 'ready\n' : `not ready${reason}\n`);
          },
          () => answer(503, 'not ready\n'),
        );
    } else {
      answer(404, 'not found\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    const failed = (error: Error) => {
      tokens?.close();
      reject(error);
    };
    server.once('error', failed);
    server.listen(options.port, options.host, () => {
      server.off('error', failed);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        tokens?.close();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

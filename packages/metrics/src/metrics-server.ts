import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { CosMetrics } from './cos-metrics.js';

export interface MetricsServerOptions {
  readonly host: string;
  /** COS_METRICS_PORT; 0 picks a free port */
  readonly port: number;
  readonly metrics: CosMetrics;
  /** readiness: the store is migrated and the handlers are reachable */
  readonly ready: () => boolean | Promise<boolean>;
}

export interface MetricsServer {
  readonly port: number;
  close(): Promise<void>;
}

/**
 * The operations HTTP port: `GET /metrics` (Prometheus text format), `GET /healthz` (liveness:
 * the process answers) and `GET /readyz` (readiness: 200 only when ready, else 503).
 */
export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const server: Server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    const answer = (status: number, body: string, type = 'text/plain; charset=utf-8') => {
      response.writeHead(status, { 'content-type': type }).end(body);
    };
    if (request.method !== 'GET' && request.method !== 'HEAD') return answer(405, 'method not allowed\n');
    if (path === '/metrics') {
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
          (ready) => answer(ready ? 200 : 503, ready ? 'ready\n' : 'not ready\n'),
          () => answer(503, 'not ready\n'),
        );
    } else {
      answer(404, 'not found\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

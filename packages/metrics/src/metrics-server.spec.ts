import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createMetrics } from './cos-metrics.js';
import { startMetricsServer } from './metrics-server.js';

const dir = mkdtempSync(join(tmpdir(), 'cos-metrics-token-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the operations port with COS_METRICS_TOKEN_FILE', () => {
  it('asks /metrics for a listed bearer token, keeps the probes open, and takes a rotated file', async () => {
    const tokenFile = join(dir, 'metrics-tokens');
    writeFileSync(tokenFile, 'scraper-token-0123456789\n');
    const server = await startMetricsServer({
      host: '127.0.0.1',
      port: 0,
      metrics: createMetrics({ defaultMetrics: false }),
      ready: () => true,
      tokenFile,
      reloadIntervalMs: 20,
    });
    const get = (path: string, token?: string) =>
      fetch(`http://127.0.0.1:${server.port}${path}`, token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } });
    try {
      const refused = await get('/metrics');
      expect(refused.status).toBe(401);
      expect(refused.headers.get('www-authenticate')).toBe('Bearer realm="metrics"');
      expect((await get('/metrics', 'wrong-token-0123456789')).status).toBe(401);
      const scraped = await get('/metrics', 'scraper-token-0123456789');
      expect(scraped.status).toBe(200);
      expect(await scraped.text()).toContain('cos_');
      expect((await get('/healthz')).status).toBe(200);
      expect((await get('/readyz')).status).toBe(200);

      writeFileSync(tokenFile, 'rotated-token-0123456789\n');
      const until = Date.now() + 5000;
      while ((await get('/metrics', 'rotated-token-0123456789')).status !== 200 && Date.now() < until) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      expect((await get('/metrics', 'rotated-token-0123456789')).status).toBe(200);
      expect((await get('/metrics', 'scraper-token-0123456789')).status).toBe(401);
    } finally {
      await server.close();
    }
  });

  it('refuses to start with a token file that holds no usable token', async () => {
    const empty = join(dir, 'empty');
    writeFileSync(empty, '# nothing yet\n');
    await expect(
      startMetricsServer({ host: '127.0.0.1', port: 0, metrics: createMetrics({ defaultMetrics: false }), ready: () => true, tokenFile: empty }),
    ).rejects.toThrow(/cannot use .*no token/);
  });
});

describe('/readyz', () => {
  it('says why it is not ready when told', async () => {
    let readiness: boolean | { ready: boolean; reason?: string } = { ready: false, reason: 'write handler circuit breaker open' };
    const server = await startMetricsServer({ host: '127.0.0.1', port: 0, metrics: createMetrics({ defaultMetrics: false }), ready: () => readiness });
    try {
      const refused = await fetch(`http://127.0.0.1:${server.port}/readyz`);
      expect([refused.status, await refused.text()]).toEqual([503, 'not ready: write handler circuit breaker open\n']);
      readiness = { ready: true };
      expect((await fetch(`http://127.0.0.1:${server.port}/readyz`)).status).toBe(200);
    } finally {
      await server.close();
    }
  });
});

import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '@chiefofstate/config';
import { createLogger } from '@chiefofstate/logging';
import { testPostgresConnection, testPostgresEnv, testStoreKinds, uniqueSchemaName } from '@chiefofstate/postgres/testing';
import { freePort } from '@chiefofstate/testing';
import { startCosServer } from './cos-server.js';

/** Whether a TCP port on 127.0.0.1 can be bound again (nothing left listening on it). */
async function isFree(port: number): Promise<boolean> {
  const server = createServer();
  return new Promise((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/**
 * Item 9 of issue 12: a start-up that fails after the gRPC server started (here the read sides,
 * whose offset store cannot be reached) must close everything it opened, so an embedder that
 * catches the error keeps no port, pool or client open.
 */
describe.each(await testStoreKinds())('startCosServer failing after the gRPC server started, %s store', (kind) => {
  const cleanup: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const step of cleanup.splice(0).reverse()) await step().catch(() => {});
  });

  it('closes the gRPC server, the HTTP front end, the metrics server and every pool, then rejects', async () => {
    const port = await freePort();
    const httpPort = await freePort();
    const metricsPort = await freePort();
    const unreachable = await freePort();
    const schema = uniqueSchemaName('startup');
    const serviceName = `cos-startup-${schema}`;
    let storeEnv: Record<string, string>;
    if (kind === 'postgres') {
      storeEnv = testPostgresEnv(schema);
    } else {
      const dir = await mkdtemp(join(tmpdir(), 'cos-startup-'));
      cleanup.push(() => rm(dir, { recursive: true, force: true }));
      storeEnv = { COS_DATA_DIR: dir };
    }
    const { config } = loadConfig({
      env: {
        ...storeEnv,
        COS_ADDRESS: '127.0.0.1',
        COS_PORT: String(port),
        COS_SERVER_PROTOCOL: 'both',
        COS_HTTP_PORT: String(httpPort),
        COS_METRICS_PORT: String(metricsPort),
        COS_SERVICE_NAME: serviceName,
        WRITE_SIDE_HANDLER_SERVICE_HOST: '127.0.0.1',
        WRITE_SIDE_HANDLER_SERVICE_PORT: '1',
        COS_READ_SIDE_ENABLED: 'true',
        READ_SIDE_HANDLER_SERVICE_HOST: '127.0.0.1',
        READ_SIDE_HANDLER_SERVICE_PORT: '1',
        // the offsets live in a database nobody answers for: the read sides fail to start
        COS_READ_SIDE_OFFSET_DB_HOST: '127.0.0.1',
        COS_READ_SIDE_OFFSET_DB_PORT: String(unreachable),
        COS_DB_CONNECT_TIMEOUT: '1',
      },
    });
    const logger = createLogger({ level: 'error', name: serviceName });
    await expect(startCosServer({ config, logger })).rejects.toThrow();

    expect(await isFree(port)).toBe(true);
    expect(await isFree(httpPort)).toBe(true);
    expect(await isFree(metricsPort)).toBe(true);
    if (kind === 'postgres') {
      // no connection of the store pool, the lease pool or the LISTEN client is left
      const admin = new pg.Client(testPostgresConnection('public'));
      await admin.connect();
      cleanup.push(async () => {
        await admin.query(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(schema)} CASCADE`);
        await admin.end();
      });
      const count = async () =>
        Number(
          (
            await admin.query<{ n: string }>(
              `SELECT count(*) AS n FROM pg_stat_activity WHERE application_name LIKE $1 || '%'`,
              [serviceName],
            )
          ).rows[0]!.n,
        );
      // a backend leaves pg_stat_activity a moment after its client closed: poll, bounded
      for (let i = 0; i < 100 && (await count()) > 0; i++) await new Promise((resolve) => setTimeout(resolve, 50));
      expect(await count()).toBe(0);
    }
  }, 60_000);
});

describe('COS_SERVER_PROTOCOL=http on the embedded store', () => {
  it('opens the HTTP/JSON front end and leaves the gRPC port closed', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cos-http-only-'));
    const [port, httpPort, metricsPort] = [await freePort(), await freePort(), await freePort()];
    const { config } = loadConfig({
      env: {
        COS_DATA_DIR: dir,
        COS_ADDRESS: '127.0.0.1',
        COS_PORT: String(port),
        COS_SERVER_PROTOCOL: 'http',
        COS_HTTP_PORT: String(httpPort),
        COS_METRICS_PORT: String(metricsPort),
        WRITE_SIDE_HANDLER_SERVICE_HOST: '127.0.0.1',
        WRITE_SIDE_HANDLER_SERVICE_PORT: '1',
      },
    });
    const server = await startCosServer({ config, logger: createLogger({ level: 'error', name: 'cos-http-only' }) });
    try {
      expect({ port: server.port, httpPort: server.httpPort }).toEqual({ port: 0, httpPort });
      expect(await isFree(port)).toBe(true);
      const reply = await fetch(`http://127.0.0.1:${httpPort}/v1/entities/nobody/state`);
      expect(reply.status).toBe(404);
      expect(await reply.json()).toMatchObject({ code: 5, status: 'NOT_FOUND' });
    } finally {
      await server.close(100);
      await rm(dir, { recursive: true, force: true });
    }
    expect(await isFree(httpPort)).toBe(true);
  }, 60_000);
});

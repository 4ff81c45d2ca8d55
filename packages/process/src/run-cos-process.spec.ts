import { fileURLToPath } from 'node:url';
import { startProcess } from '@chiefofstate/testing';
import { describe, expect, it } from 'vitest';

const FIXTURE = fileURLToPath(new URL('../test/fixture-process.ts', import.meta.url));
const BASE_ENV = {
  NODE_OPTIONS: '--conditions=@chiefofstate/source',
  WRITE_SIDE_HANDLER_SERVICE_HOST: '127.0.0.1',
  WRITE_SIDE_HANDLER_SERVICE_PORT: '50051',
  COS_DATA_DIR: '/tmp/unused',
};
const run = (env: Record<string, string>) => startProcess(process.execPath, ['--import', 'tsx', FIXTURE], { ...BASE_ENV, ...env });

describe('runCosProcess', () => {
  it('exits 2 with every configuration problem in one message', async () => {
    const child = run({ COS_PORT: 'abc', COS_NUM_SHARDS: '12' });
    expect(await child.exited).toBe(2);
    expect(child.output()).toMatch(/fixture: invalid configuration/);
    expect(child.output()).toMatch(/COS_PORT="abc"/);
    expect(child.output()).toMatch(/COS_NUM_SHARDS="12"/);
  });

  it('starts, logs the redacted configuration, and on SIGTERM closes and exits 0', async () => {
    const child = run({ COS_PORT: '9123', COS_POSTGRES_HOST: 'db', COS_POSTGRES_PASSWORD: 's3cret' });
    await child.waitFor(/fixture started/);
    expect(child.output()).toMatch(/"port":9123/);
    expect(child.output()).not.toContain('s3cret');
    expect(await child.kill('SIGTERM')).toBe(0);
    expect(child.output()).toMatch(/closing with grace 1000/);
  });

  it('stops gracefully when SIGTERM arrives while it is still starting', async () => {
    const child = run({ FIXTURE_START_MS: '700' });
    await child.waitFor(/fixture starting slowly/);
    child.child.kill('SIGTERM');
    expect(await child.exited).toBe(0);
    expect(child.output()).toMatch(/fixture started/);
    expect(child.output()).toMatch(/closing with grace 1000/);
  });

  it('exits 1 within the limit when closing hangs', async () => {
    const child = run({ FIXTURE_CLOSE: 'hang' });
    await child.waitFor(/fixture started/);
    const started = Date.now();
    expect(await child.kill('SIGTERM')).toBe(1);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(child.output()).toMatch(/shutdown took too long/);
  });
});

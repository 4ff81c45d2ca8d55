import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { startOtlpReceiver, startProcess, type OtlpReceiver } from '@chiefofstate/testing';
import { afterEach, describe, expect, it, vi } from 'vitest';

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

describe('runCosProcess tracing', () => {
  let receiver: OtlpReceiver | undefined;
  afterEach(async () => {
    await receiver?.close();
    receiver = undefined;
  });

  it('exports to OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as is, in the protocol and at the delay the OTEL_* variables say', async () => {
    receiver = await startOtlpReceiver();
    const child = run({
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${receiver.endpoint}/custom/traces`,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_BSP_SCHEDULE_DELAY: '50',
      FIXTURE_SPAN: 'fixture.span',
    });
    await child.waitFor(/fixture started/);
    // before any shutdown flush: the default delay (5 s) would not get it here in time
    const spans = receiver.spans;
    await vi.waitFor(() => expect(spans.map((span) => span.name)).toEqual(['fixture.span']), { timeout: 3_000 });
    expect(receiver.requests.map((request) => [request.path, request.contentType])).toEqual([
      ['/custom/traces', 'application/json'],
    ]);
    expect(await child.kill('SIGTERM')).toBe(0);
  });

  it('exports http/protobuf by default, and nothing with OTEL_TRACES_SAMPLER=always_off', async () => {
    receiver = await startOtlpReceiver();
    for (const sampler of [{}, { OTEL_TRACES_SAMPLER: 'always_off' }] as Array<Record<string, string>>) {
      const child = run({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint, FIXTURE_SPAN: 'fixture.span', ...sampler });
      await child.waitFor(/fixture started/);
      expect(await child.kill('SIGTERM')).toBe(0);
    }
    // the spans of both runs: the first exported its span on shutdown, the second had none
    expect(receiver.spans.map((span) => span.name)).toEqual(['fixture.span']);
    expect(receiver.requests.map((request) => [request.path, request.contentType])).toEqual([
      ['/v1/traces', 'application/x-protobuf'],
    ]);
  });

  it('logs a warning when the collector refuses the spans, once for a burst of failures', async () => {
    let requests = 0;
    const refusing = createServer((request, response) => {
      requests++;
      request.resume();
      request.on('end', () => response.writeHead(400).end());
    });
    await new Promise<void>((resolve) => refusing.listen(0, '127.0.0.1', resolve));
    try {
      const child = run({
        OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${(refusing.address() as AddressInfo).port}`,
        OTEL_BSP_SCHEDULE_DELAY: '20',
        FIXTURE_SPAN: 'fixture.span',
        FIXTURE_SPANS_EVERY_MS: '30',
      });
      await child.waitFor(/trace export is failing/);
      await vi.waitFor(() => expect(requests).toBeGreaterThanOrEqual(4), { timeout: 3_000 });
      expect(await child.kill('SIGTERM')).toBe(0);
      const warnings = child.output().split('\n').filter((line) => line.includes('trace export is failing'));
      expect(warnings).toHaveLength(1);
      expect(JSON.parse(warnings[0]!)).toMatchObject({ level: 'warn', failed_exports: 1, lost_spans: 1, err: { message: expect.stringMatching(/400|Bad Request/) } });
    } finally {
      await new Promise<void>((resolve) => refusing.close(() => resolve()));
    }
  });
});

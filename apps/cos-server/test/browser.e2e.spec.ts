// A browser calls COS: headless Chromium (Debian's, driven by playwright-core) loads a page from a
// server of the test's own, on another origin than COS, whose script is Connect-Web bundled by
// esbuild. It opens an account through the Connect protocol (JSON) and reads it back through
// gRPC-Web over the gRPC port (HTTP/1.1, as a browser speaks to a cleartext origin), with CORS
// from COS_CORS_ALLOWED_ORIGINS and a bearer token, and watches it with Subscribe (streaming
// JSON); the page shows the new state and the events it watched.
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testStoreKinds, uniqueSchemaName } from '@chiefofstate/postgres/testing';
import { startCos, type CosFixture } from './support/cos-fixture.js';
import { buildBankDescriptorSet, startBankHandler } from './support/json-clients.js';
import type { RunningProcess } from './support/processes.js';

const CHROMIUM = '/usr/bin/chromium';
const hasServer = (await testStoreKinds()).includes('postgres');
// on CI the browser must be there: a missing one fails rather than skips
const hasBrowser = existsSync(CHROMIUM) || process.env['CI'] === 'true';
const TOKEN = 'browser-e2e-token-0123456789';

describe.runIf(hasServer && hasBrowser)('a browser calling COS with Connect-Web', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cos-browser-'));
  const descriptorSet = buildBankDescriptorSet(dir);
  let bank: RunningProcess & { port: number };
  let cos: CosFixture;
  let pageServer: Server;
  let pageOrigin: string;
  let browser: Browser;

  beforeAll(async () => {
    const bundled = await build({
      entryPoints: [fileURLToPath(new URL('./support/browser/page.mjs', import.meta.url))],
      bundle: true,
      write: false,
      format: 'esm',
      platform: 'browser',
      target: 'es2022',
      // workspace packages from their sources, as the tests resolve them
      conditions: ['@chiefofstate/source'],
      logLevel: 'silent',
    });
    const script = bundled.outputFiles[0]!.text;
    let html = '';
    pageServer = createServer((request, response) => {
      if (request.url === '/page.js') {
        response.writeHead(200, { 'content-type': 'text/javascript' });
        response.end(script);
      } else {
        response.writeHead(200, { 'content-type': 'text/html' });
        response.end(html);
      }
    });
    await new Promise<void>((resolve) => pageServer.listen(0, '127.0.0.1', resolve));
    pageOrigin = `http://127.0.0.1:${(pageServer.address() as AddressInfo).port}`;

    writeFileSync(join(dir, 'tokens'), `${TOKEN}\n`);
    bank = await startBankHandler();
    cos = await startCos(
      {
        WRITE_SIDE_HANDLER_SERVICE_HOST: '127.0.0.1',
        WRITE_SIDE_HANDLER_SERVICE_PORT: String(bank.port),
        COS_PROTO_DESCRIPTOR_SET: descriptorSet,
        COS_CORS_ALLOWED_ORIGINS: pageOrigin,
        COS_AUTH_TOKENS_FILE: join(dir, 'tokens'),
        COS_SUBSCRIPTION_ENABLED: 'true',
      },
      uniqueSchemaName('browser'),
    );
    const settings = {
      cosUrl: `http://127.0.0.1:${cos.port}`,
      token: TOKEN,
      descriptorSet: readFileSync(descriptorSet).toString('base64'),
      entityId: 'browser-acc-1',
    };
    html = `<!doctype html><html><body><div id="state">pending</div>
<script>window.COS_TEST = ${JSON.stringify(settings)};</script>
<script type="module" src="/page.js"></script></body></html>`;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
    });
  }, 90_000);

  afterAll(async () => {
    await browser?.close();
    await new Promise((resolve) => pageServer?.close(resolve));
    await cos?.dispose();
    await bank?.kill();
  });

  it('runs ProcessCommand from the page, shows the new state and the events a subscription streamed', async () => {
    const page = await browser.newPage();
    const failures: string[] = [];
    page.on('pageerror', (error) => failures.push(error.message));
    await page.goto(pageOrigin);
    const state = page.locator('#state');
    await expect.poll(() => state.textContent(), { timeout: 20_000 }).not.toBe('pending');
    const shown = (await state.textContent()) ?? '';
    expect(failures).toEqual([]);
    const result = shown.startsWith('error') ? shown : (JSON.parse(shown) as Record<string, unknown>);
    expect(result).toMatchObject({ watched: [{ revision: 1 }, { revision: 2, balanceCents: '4200' }] });
    expect(result).toEqual({
      watched: expect.any(Array),
      owner: 'browser',
      balanceCents: '4200',
      revision: 2,
      readBackBalanceCents: '4200',
    });
  }, 30_000);
});

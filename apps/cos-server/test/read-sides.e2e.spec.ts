// cos-server with COS_READ_SIDE_ENABLED=true: the read sides run in the server process, every
// event persisted by ProcessCommand reaches the read-side handler (its own process, the stock
// grpc-js one of apps/cos-readside's tests), and ReadSideManagerService is served on COS_PORT.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { create } from '@bufbuild/protobuf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { shardOf } from '@chiefofstate/core';
import { testStoreKinds } from '@chiefofstate/postgres/testing';
import { GetLatestOffsetRequestSchema, ReadSideManagerService } from '@chiefofstate/protocol';
import { createGrpcJsClient, startProcess, type GrpcJsClient, type RunningProcess } from '@chiefofstate/testing';
import { command, startCos, type CosFixture } from './support/cos-fixture.js';
import { APP_ROOT, startTestHandler } from './support/processes.js';

const hasServer = (await testStoreKinds()).includes('postgres');
const READ_SIDE_HANDLER = fileURLToPath(new URL('../../cos-readside/test/support/read-side-handler.ts', import.meta.url));

interface Call {
  r: string;
  e: string;
  v: number;
  h: string | null;
  t: string | null;
  a: string;
}

describe.runIf(hasServer)('cos-server with the read sides on', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cos-server-readside-'));
  let writeHandler: RunningProcess & { port: number };
  let readHandler: RunningProcess;
  let cos: CosFixture;
  let manager: GrpcJsClient;
  const calls = () =>
    readHandler
      .output()
      .split('\n')
      .filter((line) => line.startsWith('{') && line.endsWith('}'))
      .map((line) => JSON.parse(line) as Call);

  beforeAll(async () => {
    writeHandler = await startTestHandler();
    const rules = join(dir, 'rules.json');
    writeFileSync(rules, '[]');
    readHandler = startProcess(process.execPath, ['--import', 'tsx', READ_SIDE_HANDLER], {
      PORT: '0',
      RULES_FILE: rules,
      NODE_OPTIONS: '--conditions=@chiefofstate/source',
    }, { cwd: APP_ROOT });
    const [, port] = (await readHandler.waitFor(/listening (\d+)/)) as unknown as [string, string];
    cos = await startCos({
      WRITE_SIDE_HANDLER_SERVICE_HOST: '127.0.0.1',
      WRITE_SIDE_HANDLER_SERVICE_PORT: String(writeHandler.port),
      COS_READ_SIDE_ENABLED: 'true',
      READ_SIDE_HANDLER_SERVICE_HOST: '127.0.0.1',
      READ_SIDE_HANDLER_SERVICE_PORT: port,
    });
    manager = createGrpcJsClient({ service: ReadSideManagerService, address: `127.0.0.1:${cos.port}` });
  }, 90_000);

  afterAll(async () => {
    manager?.close();
    await cos?.dispose();
    await readHandler?.kill();
    await writeHandler?.kill();
    rmSync(dir, { recursive: true, force: true });
  });

  it('delivers every persisted event to the read side "default", in order per entity, and serves the manager', async () => {
    const entities = [...Array.from({ length: 20 }, (_, i) => `rs-account-${i}`), 'rs-compte-é'];
    for (let round = 0; round < 3; round++) {
      await Promise.all(entities.map((id) => cos.send(id, command('Emit', { events: [`a${round}`, `b${round}`] }))));
    }
    const deadline = Date.now() + 20_000;
    while (calls().filter((c) => c.a === 'ok').length < entities.length * 6 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    for (const id of entities) {
      expect(calls().filter((c) => c.e === id).map((c) => c.v), id).toEqual([1, 2, 3, 4, 5, 6]);
    }
    for (const call of calls()) {
      expect(call.r).toBe('default');
      expect(call.t).toBe(String(shardOf(call.e, 16)));
      expect(decodeURIComponent(call.h!)).toBe(call.e);
    }

    const { response } = await manager.unary(
      ReadSideManagerService.method.getLatestOffset,
      create(GetLatestOffsetRequestSchema, { readSideId: 'default' }),
    );
    expect(response.offsets).toHaveLength(16);
    expect(response.offsets.reduce((n, o) => n + (o.offset > 0n ? 1 : 0), 0)).toBeGreaterThan(8);
  });
});

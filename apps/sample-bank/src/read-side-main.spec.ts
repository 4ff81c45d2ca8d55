import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { create } from '@bufbuild/protobuf';
import { anyPack } from '@bufbuild/protobuf/wkt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HandleReadSideRequestSchema, MetaDataSchema, ReadSideHandlerService } from '@chiefofstate/protocol';
import { createGrpcJsClient, startProcess, type RunningProcess } from '@chiefofstate/testing';
import { AccountStatus, BankAccountSchema, DepositedSchema } from './gen/bank/v1/bank_pb.js';

// src/read-side-main.ts as a real process on an embedded store in a directory: what it applied
// survives a restart, so a re-delivery after the restart changes nothing.

const appDir = fileURLToPath(new URL('..', import.meta.url));
let dataDir: string;
let running: RunningProcess | undefined;

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'bank-read-side-'));
});

afterAll(async () => {
  await running?.kill('SIGKILL');
  await rm(dataDir, { recursive: true, force: true });
});

async function start(): Promise<number> {
  running = startProcess(
    process.execPath,
    ['--conditions=@chiefofstate/source', '--import', 'tsx', 'src/read-side-main.ts'],
    { HOST: '127.0.0.1', PORT: '0', READ_SIDE_DATA_DIR: dataDir },
    { cwd: appDir },
  );
  const [line] = await running.waitFor(/\{[^\n]*"msg":"bank read side listening"[^\n]*\}/, 30_000);
  return (JSON.parse(line) as { port: number }).port;
}

async function deliver(port: number, revision: number, balanceCents: bigint): Promise<boolean> {
  const client = createGrpcJsClient({ service: ReadSideHandlerService, address: `127.0.0.1:${port}` });
  try {
    const { response } = await client.unary(
      ReadSideHandlerService.method.handleReadSide,
      create(HandleReadSideRequestSchema, {
        event: anyPack(DepositedSchema, create(DepositedSchema, { amountCents: 1n })),
        state: anyPack(
          BankAccountSchema,
          create(BankAccountSchema, { accountId: 'acc-9', owner: 'zoe', balanceCents, status: AccountStatus.OPEN }),
        ),
        meta: create(MetaDataSchema, { entityId: 'acc-9', revisionNumber: revision }),
        readSideId: 'balances',
      }),
    );
    return response.successful;
  } finally {
    client.close();
  }
}

const applied = () => running!.output().match(/"msg":"balance applied"/g)?.length ?? 0;

describe('read-side-main', () => {
  it('serves, logs applied balances, stops on SIGTERM and keeps its table for the next start', async () => {
    let port = await start();
    expect(await deliver(port, 2, 100n)).toBe(true);
    await running!.waitFor(/"accountId":"acc-9","balanceCents":"100","status":"OPEN","revision":"2"/);
    expect(await running!.kill('SIGTERM')).toBe(0);

    port = await start();
    expect(await deliver(port, 2, 999n)).toBe(true);
    expect(await deliver(port, 1, 5n)).toBe(true);
    expect(applied()).toBe(0);
    expect(await deliver(port, 3, 101n)).toBe(true);
    await running!.waitFor(/"balanceCents":"101","status":"OPEN","revision":"3"/);
    expect(applied()).toBe(1);
  }, 60_000);

  it('refuses a READ_SIDE_DATABASE_URL that is not a postgres URL, with exit code 2', async () => {
    const bad = startProcess(
      process.execPath,
      ['--conditions=@chiefofstate/source', '--import', 'tsx', 'src/read-side-main.ts'],
      { READ_SIDE_DATABASE_URL: 'mysql://x/y' },
      { cwd: appDir },
    );
    expect(await bad.exited).toBe(2);
    expect(bad.output()).toContain('READ_SIDE_DATABASE_URL must be a postgres:// URL');
  });
});


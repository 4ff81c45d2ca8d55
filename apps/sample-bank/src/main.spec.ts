import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { create, fromBinary } from '@bufbuild/protobuf';
import { anyPack, anyUnpack, type Any } from '@bufbuild/protobuf/wkt';
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { emptyState, HandleCommandRequestSchema, MetaDataSchema, WriteSideHandlerService } from '@chiefofstate/protocol';
import { createGrpcJsClient, decodeRpcStatus } from '@chiefofstate/testing';
import {
  AccountOpenedSchema,
  AccountStatus,
  BankAccountSchema,
  InsufficientFundsSchema,
  OpenAccountSchema,
  WithdrawSchema,
} from './gen/bank/v1/bank_pb.js';

// The entry point as a real process, started the way the quickstart and the e2e tests start it.

const appDir = fileURLToPath(new URL('..', import.meta.url));

interface Started {
  child: ChildProcess;
  logs: Record<string, unknown>[];
  port: number;
}

const children: ChildProcess[] = [];

afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill('SIGKILL');
});

function spawnMain(env: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, ['--conditions=@chiefofstate/source', '--import', 'tsx', 'src/main.ts'], {
    cwd: appDir,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  return child;
}

async function startMain(env: Record<string, string>): Promise<Started> {
  const child = spawnMain({ HOST: '127.0.0.1', PORT: '0', ...env });
  const logs: Record<string, unknown>[] = [];
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const port = await new Promise<number>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const entry = JSON.parse(line) as Record<string, unknown>;
      logs.push(entry);
      if (entry['msg'] === 'bank write handler listening') resolve(entry['port'] as number);
    });
    child.once('exit', (code) => reject(new Error(`exited with ${code} before listening: ${stderr}`)));
  });
  return { child, logs, port };
}

describe('main (node src/main.ts)', () => {
  it('serves the handler on the configured port, logs with pino, and stops on SIGTERM', async () => {
    const { child, logs, port } = await startMain({ LOG_LEVEL: 'debug' });
    expect(port).toBeGreaterThan(0);
    const client = createGrpcJsClient({ service: WriteSideHandlerService, address: `127.0.0.1:${port}` });
    try {
      const request = (command: Any, priorState = emptyState()) =>
        create(HandleCommandRequestSchema, {
          command,
          priorState,
          priorEventMeta: create(MetaDataSchema, { entityId: 'acc-main' }),
        });
      const { response } = await client.unary(
        WriteSideHandlerService.method.handleCommand,
        request(anyPack(OpenAccountSchema, create(OpenAccountSchema, { owner: 'alice' }))),
      );
      expect(anyUnpack(response.events[0]!, AccountOpenedSchema)?.accountId).toBe('acc-main');

      // a prior state as COS would hold it after earlier events
      const prior = anyPack(
        BankAccountSchema,
        create(BankAccountSchema, { accountId: 'acc-main', owner: 'alice', balanceCents: 70n, status: AccountStatus.OPEN }),
      );
      const error = await client
        .unary(
          WriteSideHandlerService.method.handleCommand,
          request(anyPack(WithdrawSchema, create(WithdrawSchema, { amountCents: 500n })), prior),
        )
        .then(
          () => undefined,
          (e: grpc.ServiceError) => e,
        );
      expect([error?.code, error?.details]).toEqual([
        grpc.status.FAILED_PRECONDITION,
        'insufficient funds: balance 70, requested 500',
      ]);
      const status = decodeRpcStatus(error!.metadata.get('grpc-status-details-bin')[0] as Buffer);
      expect(status.details.map((d) => fromBinary(InsufficientFundsSchema, d.value))).toEqual([
        create(InsufficientFundsSchema, { balanceCents: 70n, requestedCents: 500n }),
      ]);
    } finally {
      client.close();
    }

    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    const [code] = await exited;
    expect(code).toBe(0);
    const messages = logs.map((entry) => entry['msg']);
    expect(messages).toEqual(
      expect.arrayContaining(['bank write handler listening', 'command accepted', 'insufficient funds: balance 70, requested 500', 'shutting down', 'stopped']),
    );
    expect(logs.find((entry) => entry['msg'] === 'insufficient funds: balance 70, requested 500')).toEqual(
      expect.objectContaining({ accountId: 'acc-main', command: 'bank.v1.Withdraw', code: 'FAILED_PRECONDITION' }),
    );
  });

  it('refuses a bad PORT with a clear message and exit code 2', async () => {
    const child = spawnMain({ PORT: 'eighty' });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const [code] = await once(child, 'exit');
    expect(code).toBe(2);
    expect(stderr).toContain('PORT must be an integer from 0 to 65535, got "eighty"');
  });

  it('exits with 1 when the port is taken', async () => {
    const first = await startMain({});
    const second = spawnMain({ HOST: '127.0.0.1', PORT: String(first.port) });
    let stdout = '';
    second.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    const [code] = await once(second, 'exit');
    expect(code).toBe(1);
    expect(stdout).toContain('could not start the bank write handler');
    expect(stdout).toContain('EADDRINUSE');
    first.child.kill('SIGTERM');
    expect((await once(first.child, 'exit'))[0]).toBe(0);
  });
});

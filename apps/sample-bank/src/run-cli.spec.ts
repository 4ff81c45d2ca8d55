import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cosBaseUrl, runCli, USAGE } from './run-cli.js';
import { startBankHandlerServer, type BankHandlerServer } from './server.js';
import { startStandInCos, type StandInCos } from './test-support/stand-in-cos.js';

// The CLI against a Chief-of-State stand-in that calls the real bank handler over gRPC.

let handler: BankHandlerServer;
let cos: StandInCos;

beforeAll(async () => {
  handler = await startBankHandlerServer({ host: '127.0.0.1', port: 0 });
  cos = await startStandInCos(`127.0.0.1:${handler.port}`);
});

afterAll(async () => {
  await cos?.close();
  await handler?.close();
});

interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
}

async function cli(argv: string[], env: Record<string, string> = { COS_ADDRESS: cos.address }): Promise<Outcome> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(argv, { env, stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) });
  return { code, stdout, stderr };
}

function json(outcome: Outcome): Record<string, unknown> {
  expect(outcome).toEqual(expect.objectContaining({ code: 0, stderr: '' }));
  return JSON.parse(outcome.stdout) as Record<string, unknown>;
}

describe('runCli', () => {
  it('opens, deposits, withdraws and gets, printing the state and revision', async () => {
    const opened = json(await cli(['open', 'acc-1', 'alice']));
    expect(opened).toEqual({
      accountId: 'acc-1',
      revision: 1,
      revisionDate: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) as unknown,
      state: {
        '@type': 'type.googleapis.com/bank.v1.BankAccount',
        accountId: 'acc-1',
        owner: 'alice',
        status: 'ACCOUNT_STATUS_OPEN',
      },
    });
    expect(json(await cli(['deposit', 'acc-1', '100']))).toEqual(
      expect.objectContaining({ revision: 2, state: expect.objectContaining({ balanceCents: '100' }) as unknown }),
    );
    expect(json(await cli(['withdraw', 'acc-1', '30']))).toEqual(
      expect.objectContaining({ revision: 3, state: expect.objectContaining({ balanceCents: '70' }) as unknown }),
    );
    expect(json(await cli(['get', 'acc-1']))).toEqual(
      expect.objectContaining({ revision: 3, state: expect.objectContaining({ balanceCents: '70' }) as unknown }),
    );
  });

  it('opens with a first deposit (two events, two revisions) and closes', async () => {
    expect(json(await cli(['open', 'acc-2', 'bob', '25']))).toEqual(
      expect.objectContaining({ revision: 2, state: expect.objectContaining({ balanceCents: '25' }) as unknown }),
    );
    await cli(['withdraw', 'acc-2', '25']);
    expect(json(await cli(['close', 'acc-2']))).toEqual(
      expect.objectContaining({ revision: 4, state: expect.objectContaining({ status: 'ACCOUNT_STATUS_CLOSED' }) as unknown }),
    );
  });

  it('sends an idempotency key (a new one per run, or the one given) and retries a lost reply with it: applied once', async () => {
    json(await cli(['open', 'acc-retry', 'dora']));
    cos.loseReplies = 2;
    const retried = await cli(['deposit', 'acc-retry', '100']);
    expect(retried.code).toBe(0);
    expect(retried.stderr.match(/UNAVAILABLE: the reply was lost; retrying with idempotency key/g)).toHaveLength(2);
    expect(JSON.parse(retried.stdout)).toEqual(
      expect.objectContaining({ revision: 2, state: expect.objectContaining({ balanceCents: '100' }) as unknown }),
    );
    const keys = cos.headers.slice(-3).map((h) => h.get('x-cos-idempotency-key'));
    expect(new Set(keys).size).toBe(1);
    expect(keys[0]).toMatch(/^[0-9a-f-]{36}$/);
    // another run is another command: another key
    json(await cli(['deposit', 'acc-retry', '1']));
    expect(cos.headers.at(-1)!.get('x-cos-idempotency-key')).not.toBe(keys[0]);
    // a key given again (a script retrying a run) is answered, not applied again
    json(await cli(['--idempotency-key', 'pay-42', 'deposit', 'acc-retry', '5']));
    expect(json(await cli(['--idempotency-key=pay-42', 'deposit', 'acc-retry', '5']))).toEqual(
      expect.objectContaining({ revision: 4, state: expect.objectContaining({ balanceCents: '106' }) as unknown }),
    );
  });

  it('gives up after --retries attempts, and sends --expected-revision', async () => {
    json(await cli(['open', 'acc-giveup', 'eve']));
    cos.loseReplies = 2;
    const outcome = await cli(['--retries', '1', 'deposit', 'acc-giveup', '1']);
    expect(outcome.code).toBe(1);
    expect(outcome.stderr).toMatch(/^UNAVAILABLE: the reply was lost; retrying[^\n]*\nUNAVAILABLE: the reply was lost\n$/);
    cos.loseReplies = 0;
    json(await cli(['--expected-revision', '2', 'deposit', 'acc-giveup', '1']));
    expect(cos.headers.at(-1)!.get('x-cos-expected-revision')).toBe('2');
    expect((await cli(['--expected-revision', 'two', 'deposit', 'acc-giveup', '1'])).code).toBe(2);
  });

  it('prints an overdraft with its code, message and decoded detail', async () => {
    await cli(['open', 'acc-3', 'carol', '70']);
    expect(await cli(['withdraw', 'acc-3', '500'])).toEqual({
      code: 1,
      stdout: '',
      stderr:
        'FAILED_PRECONDITION: insufficient funds: balance 70, requested 500\n' +
        '  detail bank.v1.InsufficientFunds {"balanceCents":"70","requestedCents":"500"}\n',
    });
  });

  it('prints the handler and server errors', async () => {
    expect((await cli(['deposit', 'acc-3', '-5'])).stderr).toBe('INVALID_ARGUMENT: amount must be positive\n');
    expect((await cli(['deposit', 'nobody', '5'])).stderr).toBe('FAILED_PRECONDITION: account is not open\n');
    expect(await cli(['get', 'nobody'])).toEqual({ code: 1, stdout: '', stderr: 'NOT_FOUND: entity nobody not found\n' });
  });

  it('takes the address from --address over COS_ADDRESS', async () => {
    const outcome = await cli(['--address', cos.address, 'get', 'acc-1'], { COS_ADDRESS: '127.0.0.1:1' });
    expect(json(outcome)).toEqual(expect.objectContaining({ revision: 3 }));
    expect(json(await cli([`--address=${cos.address}`, 'get', 'acc-1'], {}))).toEqual(expect.objectContaining({ revision: 3 }));
  });

  it('reports an unreachable server as UNAVAILABLE', async () => {
    const outcome = await cli(['get', 'acc-1'], { COS_ADDRESS: '127.0.0.1:1' });
    expect(outcome.code).toBe(1);
    expect(outcome.stderr).toMatch(/^UNAVAILABLE: /);
  });

  it('explains usage errors with exit code 2, and --help with 0', async () => {
    for (const argv of [[], ['open', 'acc-1'], ['deposit', 'acc-1', '1.5'], ['launch', 'acc-1'], ['--port', '1', 'get', 'a']]) {
      const outcome = await cli(argv);
      expect(outcome.code).toBe(2);
      expect(outcome.stderr).toContain(USAGE);
    }
    expect(await cli(['--help'])).toEqual({ code: 0, stdout: USAGE, stderr: '' });
  });
});

describe('cli.ts as a process', () => {
  it('runs a command and exits', async () => {
    const appDir = fileURLToPath(new URL('..', import.meta.url));
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--conditions=@chiefofstate/source', '--import', 'tsx', 'src/cli.ts', 'get', 'acc-1'],
      { cwd: appDir, env: { ...process.env, COS_ADDRESS: cos.address }, timeout: 20_000 },
    );
    expect(JSON.parse(stdout)).toEqual(expect.objectContaining({ accountId: 'acc-1', revision: 3 }));
    const failed = await promisify(execFile)(
      process.execPath,
      ['--conditions=@chiefofstate/source', '--import', 'tsx', 'src/cli.ts', 'withdraw', 'acc-1', '1000'],
      { cwd: appDir, env: { ...process.env, COS_ADDRESS: cos.address }, timeout: 20_000 },
    ).then(
      () => undefined,
      (error: { code: number; stderr: string }) => error,
    );
    expect(failed?.code).toBe(1);
    expect(failed?.stderr).toContain('FAILED_PRECONDITION: insufficient funds: balance 70, requested 1000');
  });
});

describe('cosBaseUrl', () => {
  it('reads host:port, bare hosts, IPv6 and URLs', () => {
    expect(cosBaseUrl('127.0.0.1:9000', {})).toBe('http://127.0.0.1:9000');
    expect(cosBaseUrl('cos.internal:7000', {})).toBe('http://cos.internal:7000');
    expect(cosBaseUrl('cos.internal', {})).toBe('http://cos.internal:9000');
    expect(cosBaseUrl('cos.internal', { COS_PORT: '9100' })).toBe('http://cos.internal:9100');
    expect(cosBaseUrl('0.0.0.0', {})).toBe('http://127.0.0.1:9000');
    expect(cosBaseUrl('[::1]:9001', {})).toBe('http://[::1]:9001');
    expect(cosBaseUrl('::', {})).toBe('http://[::1]:9000');
    expect(cosBaseUrl('https://cos.example.com', {})).toBe('https://cos.example.com');
  });
});

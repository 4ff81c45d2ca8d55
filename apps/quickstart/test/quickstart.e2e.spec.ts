// `npm start` for real: the built quickstart process, then the sample CLI against it, as a user
// would type the commands it prints.
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { freePort, startProcess, type RunningProcess } from '@chiefofstate/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const APP_ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = fileURLToPath(new URL('../../sample-bank/dist/cli.js', import.meta.url));

describe('quickstart', () => {
  let quickstart: RunningProcess;
  let dataDir: string;
  let tempRoot: string;
  let address: string;

  /** Starts the built quickstart on dataDir, on free ports, and waits until it is ready. */
  async function start(): Promise<void> {
    const port = await freePort();
    address = `127.0.0.1:${port}`;
    quickstart = startProcess(
      process.execPath,
      [join(APP_ROOT, 'dist/main.js')],
      { COS_PORT: String(port), COS_METRICS_PORT: String(await freePort()), COS_DATA_DIR: dataDir, BANK_HANDLER_PORT: '0', BANK_READ_SIDE_PORT: '0', LOG_LEVEL: 'info', LOG_STYLE: 'JSON' },
      { cwd: APP_ROOT },
    );
    await quickstart.waitFor(/Ctrl-C stops it/, 60_000);
  }

  const cli = async (...args: string[]) => {
    const result = await run(process.execPath, [CLI, '--address', address, ...args]).catch(
      (error: { stdout: string; stderr: string; code: number }) => error,
    );
    return { stdout: result.stdout, stderr: result.stderr, code: 'code' in result ? result.code : 0 };
  };

  beforeAll(async () => {
    // like a fresh checkout: the data directory does not exist before the first start
    tempRoot = await mkdtemp(join(tmpdir(), 'cos-quickstart-'));
    dataDir = join(tempRoot, '.cos-data');
    await start();
  }, 90_000);

  afterAll(async () => {
    await quickstart?.kill('SIGINT');
    await rm(tempRoot, { recursive: true, force: true });
  });

  /** The read side's log line for an account's balance at a revision (JSON lines, info level). */
  const balanceLine = (accountId: string, cents: number, revision: number) =>
    new RegExp(`"accountId":"${accountId}","balanceCents":"${cents}","status":"OPEN","revision":"${revision}"[^\\n]*"msg":"balance applied"`);

  it('prints how to send commands', () => {
    expect(quickstart.output()).toContain(`Chief-of-State is serving on ${address}`);
    expect(quickstart.output()).toMatch(/Balances are kept by the sample read side on 127\.0\.0\.1:\d+/);
    expect(quickstart.output()).toContain(`node apps/sample-bank/dist/cli.js --address ${address} open acc-1 alice 1000`);
  });

  it('opens, deposits, withdraws and reads an account through COS', async () => {
    const opened = await cli('open', 'acc-1', 'alice', '1000');
    expect(opened.code).toBe(0);
    expect(JSON.parse(opened.stdout)).toMatchObject({ accountId: 'acc-1', revision: 2 });
    await cli('deposit', 'acc-1', '500');
    const withdrawn = await cli('withdraw', 'acc-1', '200');
    expect(JSON.parse(withdrawn.stdout)).toMatchObject({ revision: 4 });
    expect(JSON.stringify(JSON.parse(withdrawn.stdout).state)).toContain('1300');
    const got = await cli('get', 'acc-1');
    expect(JSON.parse(got.stdout)).toMatchObject({ accountId: 'acc-1', revision: 4 });
    // COS delivers every event to the sample read side, which stores the balance in its table.
    await quickstart.waitFor(balanceLine('acc-1', 1300, 4), 15_000);
  });

  it("passes the handler's refusal through with its detail", async () => {
    const refused = await cli('withdraw', 'acc-1', '999999');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/FAILED_PRECONDITION: insufficient funds/);
    expect(refused.stderr).toMatch(/InsufficientFunds/);
  });

  it('stops on SIGINT and keeps the state for the next start', async () => {
    expect(await quickstart.kill('SIGINT')).toBe(0);
    await start();
    const got = await cli('get', 'acc-1');
    expect(JSON.parse(got.stdout)).toMatchObject({ accountId: 'acc-1', revision: 4 });
    // the read side picks up where it left off
    expect(JSON.parse((await cli('deposit', 'acc-1', '1')).stdout)).toMatchObject({ revision: 5 });
    await quickstart.waitFor(balanceLine('acc-1', 1301, 5), 15_000);
  }, 90_000);
});

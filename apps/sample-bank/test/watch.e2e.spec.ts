// `watch ACCOUNT_ID` for real: the built cos-server (subscriptions on) on the real PostgreSQL, in a
// schema of its own, the bank handler, and the built CLI as child processes, as a user would run
// them. Needs `npx nx run-many -t build -p @chiefofstate/cos-server @chiefofstate/sample-bank`.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openTestDatabase, testPostgresEnv, uniqueSchemaName, type TestDatabase } from '@chiefofstate/postgres/testing';
import { freePort, pollUntil, startProcess, type RunningProcess } from '@chiefofstate/testing';
import { startBankHandlerServer, type BankHandlerServer } from '../src/server.js';

const run = promisify(execFile);
const CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
const COS_MAIN = fileURLToPath(new URL('../../cos-server/dist/main.js', import.meta.url));

interface Change {
  accountId: string;
  revision: number;
  revisionDate: string;
  event: { '@type': string; amountCents?: string; owner?: string };
  state: { '@type': string; balanceCents?: string; status: string };
}

/** The JSON lines a watch printed so far. */
const changesOf = (watch: RunningProcess): Change[] =>
  watch
    .output()
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Change);

describe('sample-bank CLI watch against cos-server', () => {
  const schema = uniqueSchemaName('bank_watch');
  let handler: BankHandlerServer;
  /** the schema's lifetime: dropped after the tests */
  let database: TestDatabase;
  let cos: RunningProcess;
  let address: string;
  const watches: RunningProcess[] = [];

  const startCos = async (port: number) => {
    cos = startProcess(process.execPath, [COS_MAIN], {
      ...testPostgresEnv(schema),
      COS_ADDRESS: '127.0.0.1',
      COS_PORT: String(port),
      COS_METRICS_PORT: String(await freePort()),
      COS_SUBSCRIPTION_ENABLED: 'true',
      WRITE_SIDE_HANDLER_SERVICE_HOST: '127.0.0.1',
      WRITE_SIDE_HANDLER_SERVICE_PORT: String(handler.port),
      LOG_LEVEL: 'info',
    });
    await cos.waitFor(/chief-of-state serving/, 60_000);
  };

  const cli = async (...args: string[]) => {
    const result = await run(process.execPath, [CLI, '--address', address, ...args]).catch(
      (error: { stdout: string; stderr: string; code: number }) => error,
    );
    return { stdout: result.stdout, stderr: result.stderr, code: 'code' in result ? result.code : 0 };
  };

  const watch = (...args: string[]) => {
    const process_ = startProcess(process.execPath, [CLI, '--address', address, 'watch', ...args], {});
    watches.push(process_);
    return process_;
  };

  /** Waits until the watch printed `count` changes, then returns them. */
  const untilChanges = async (watching: RunningProcess, count: number): Promise<Change[]> => {
    await pollUntil(() => changesOf(watching).length >= count, 30_000, `${count} changes printed`).catch(() => {
      throw new Error(`the watch printed:\n${watching.output()}`);
    });
    return changesOf(watching);
  };

  beforeAll(async () => {
    database = await openTestDatabase('postgres', schema);
    handler = await startBankHandlerServer({ host: '127.0.0.1', port: 0 });
    const port = await freePort();
    address = `127.0.0.1:${port}`;
    await startCos(port);
  }, 90_000);

  afterAll(async () => {
    await Promise.all(watches.map((w) => w.kill('SIGKILL')));
    await cos?.kill('SIGTERM');
    await handler?.close();
    await database?.dispose();
  });

  it("prints an account's history from a revision, one JSON line per event, then stops after --count", async () => {
    expect((await cli('open', 'acc-history', 'alice', '1000')).code).toBe(0);
    await cli('deposit', 'acc-history', '500');
    await cli('withdraw', 'acc-history', '200');
    const watching = watch('acc-history', '--from-revision', '1', '--count', '4');
    expect(await watching.exited).toBe(0);
    const changes = changesOf(watching);
    expect(changes.map((c) => [c.accountId, c.revision, c.event['@type'], c.state.balanceCents ?? '0'])).toEqual([
      ['acc-history', 1, 'type.googleapis.com/bank.v1.AccountOpened', '0'],
      ['acc-history', 2, 'type.googleapis.com/bank.v1.Deposited', '1000'],
      ['acc-history', 3, 'type.googleapis.com/bank.v1.Deposited', '1500'],
      ['acc-history', 4, 'type.googleapis.com/bank.v1.Withdrawn', '1300'],
    ]);
    expect(changes[0]!.event.owner).toBe('alice');
    expect(changes[3]!.event.amountCents).toBe('200');
    expect(changes.every((c) => c.state.status === 'ACCOUNT_STATUS_OPEN' && !Number.isNaN(Date.parse(c.revisionDate)))).toBe(true);
  });

  it('streams the changes as they happen; from a revision to come, nothing is missed however fast the commands', async () => {
    await cli('open', 'acc-live', 'bob');
    // revision 2 is the next one: the watch starts there whether it subscribes before or after it
    const watching = watch('acc-live', '--from-revision', '2');
    for (const amount of ['100', '200', '300']) expect((await cli('deposit', 'acc-live', amount)).code).toBe(0);
    const changes = await untilChanges(watching, 3);
    expect(changes.map((c) => [c.revision, c.event.amountCents, c.state.balanceCents])).toEqual([
      [2, '100', '100'],
      [3, '200', '300'],
      [4, '300', '600'],
    ]);
    // Ctrl-C ends it cleanly
    expect(await watching.kill('SIGINT')).toBe(0);
  });

  it('picks a stream lost to a restart of cos-server up again after the last revision it printed', async () => {
    await cli('open', 'acc-restart', 'carol', '10');
    const watching = watch('acc-restart', '--from-revision', '1', '--retries', '60');
    expect(await untilChanges(watching, 2)).toHaveLength(2);
    const port = Number(address.split(':')[1]);
    await cos.kill('SIGTERM');
    await watching.waitFor(/UNAVAILABLE.*subscribing again from revision 3/, 30_000);
    await startCos(port);
    await cli('deposit', 'acc-restart', '5');
    const changes = await untilChanges(watching, 3);
    expect(changes.map((c) => [c.revision, c.state.balanceCents])).toEqual([
      [1, undefined],
      [2, '10'],
      [3, '15'],
    ]);
  }, 120_000);

  it('refuses a watch without an account, and --count outside watch, as usage errors', async () => {
    expect((await cli('watch')).code).toBe(2);
    const misplaced = await cli('get', 'acc-live', '--count', '1');
    expect(misplaced.code).toBe(2);
    expect(misplaced.stderr).toContain('--from-revision and --count are options of watch');
  });
});

import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findPostgresBinDir, startOwnPostgres, type OwnPostgres } from './own-postgres.js';

// The binaries are required in CI; elsewhere the suite is skipped without them.
const available = process.env['CI'] === 'true' || findPostgresBinDir() !== undefined;

/** whether the process has exited (or is a zombie) within `ms` */
async function gone(pid: number, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  for (;;) {
    const stat = existsSync(`/proc/${pid}/stat`) ? readFileSync(`/proc/${pid}/stat`, 'utf8') : '';
    if (!stat || stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) return true;
    if (Date.now() > until) return false;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe.skipIf(!available)('startOwnPostgres', () => {
  let server: OwnPostgres;

  beforeAll(async () => {
    server = await startOwnPostgres({ database: 'owned' });
  });
  afterAll(async () => {
    await server?.dispose();
  });

  async function connect(applicationName = 'own-postgres-spec'): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: server.url, application_name: applicationName, connectionTimeoutMillis: 5_000 });
    client.on('error', () => {});
    await client.connect();
    return client;
  }

  /** settles within `ms`, or 'pending' */
  function within<T>(promise: Promise<T>, ms: number): Promise<T | 'pending'> {
    return Promise.race([promise, new Promise<'pending'>((resolve) => setTimeout(() => resolve('pending'), ms))]);
  }

  it('serves the test database on loopback, with its COS environment', async () => {
    const client = await connect();
    try {
      const result = await client.query<{ db: string; fsync: string }>(`select current_database() as db, current_setting('fsync') as fsync`);
      expect(result.rows[0]).toEqual({ db: 'owned', fsync: 'off' });
    } finally {
      await client.end();
    }
    expect(server.cosEnv('s1')).toMatchObject({ COS_POSTGRES_PORT: String(server.port), COS_POSTGRES_DB: 'owned', COS_POSTGRES_SCHEMA: 's1' });
  });

  it('stalls the whole server until resumed: open connections and new ones get no answer', async () => {
    const client = await connect();
    try {
      await server.stall();
      const stalledQuery = client.query('select 1 as one');
      expect(await within(stalledQuery, 500)).toBe('pending');
      const stalledConnect = new pg.Client({ connectionString: server.url, connectionTimeoutMillis: 10_000 });
      stalledConnect.on('error', () => {});
      const connecting = stalledConnect.connect();
      expect(await within(connecting, 300)).toBe('pending');
      server.resume();
      expect((await stalledQuery).rows).toEqual([{ one: 1 }]);
      await connecting;
      await stalledConnect.end();
    } finally {
      server.resume();
      await client.end();
    }
  });

  it('terminates the matching connections only', async () => {
    const victim = await connect('victim');
    const bystander = await connect('bystander');
    try {
      expect(await server.terminateBackends({ applicationName: 'victim' })).toBe(1);
      await expect(victim.query('select 1')).rejects.toThrow();
      await expect(bystander.query('select 1')).resolves.toBeDefined();
    } finally {
      await victim.end().catch(() => {});
      await bystander.end();
    }
  });

  it('restarts (connections are cut, a new postmaster serves) and stops and starts', async () => {
    const client = await connect();
    const before = server.postmasterPid();
    await server.restart();
    expect(server.postmasterPid()).not.toBe(before);
    await expect(client.query('select 1')).rejects.toThrow();
    await client.end().catch(() => {});
    const again = await connect();
    await again.end();

    await server.stop();
    expect(server.postmasterPid()).toBeUndefined();
    await expect(connect()).rejects.toThrow();
    await server.start();
    const third = await connect();
    await third.end();
  });

  it('dispose resumes a stalled server, stops it and removes its directory', async () => {
    const other = await startOwnPostgres();
    const pid = other.postmasterPid()!;
    await other.stall();
    await other.dispose();
    expect(existsSync(other.dir)).toBe(false);
    expect(await gone(pid, 5_000)).toBe(true);
    await other.dispose(); // twice is harmless
  });

  it('leaves no server behind when the process that started it is killed outright', async () => {
    // a child process starts a server, stalls it and reports it, then is SIGKILLed: no 'exit' handler runs
    const script = `
      import { startOwnPostgres } from ${JSON.stringify(new URL('./own-postgres.ts', import.meta.url).pathname)};
      const server = await startOwnPostgres();
      await server.stall();
      console.log(JSON.stringify({ dir: server.dir, pid: server.postmasterPid() }));
      setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    const line = await new Promise<string>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => resolve(chunk.toString()));
      child.once('exit', (code) => reject(new Error(`exited ${code}`)));
    });
    const { dir, pid } = JSON.parse(line) as { dir: string; pid: number };
    child.kill('SIGKILL');
    expect(await gone(pid, 10_000)).toBe(true);
    const removed = Date.now() + 5_000;
    while (existsSync(dir) && Date.now() < removed) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(existsSync(dir)).toBe(false);
  }, 60_000);
});

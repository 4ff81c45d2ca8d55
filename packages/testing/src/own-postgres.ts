import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { appendFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { freePort } from './processes.js';

/**
 * A PostgreSQL a test owns: initdb into a temp dir, a postmaster on a free loopback port, and
 * the faults production deals out — restart, stop, stall (SIGSTOP of the whole server),
 * terminated connections. Tests that restart or stall a server must never touch the shared one.
 * PostgreSQL refuses to run as root, so as root the server runs as the OS user `postgres`.
 * Every wait is bounded; `dispose()` always leaves nothing behind, and neither does a test
 * process that exits without calling it, or is killed.
 */

export interface OwnPostgresOptions {
  /** database created for the test (default `cos`) */
  readonly database?: string;
  /** OS user the server runs as when we are root (default `postgres`) */
  readonly osUser?: string;
  /** directory of initdb, pg_ctl and postgres (default: COS_TEST_PG_BIN, PATH, /usr/local/bin, /usr/lib/postgresql/<v>/bin) */
  readonly binDir?: string;
  /** extra postgresql.conf settings */
  readonly settings?: Readonly<Record<string, string | number>>;
  /** bound of each pg_ctl/initdb run, in ms (default 60 s) */
  readonly timeoutMs?: number;
  /** serve TCP over TLS only (ssl=on, `hostnossl ... reject`); the admin connection uses the Unix socket */
  readonly tls?: OwnPostgresTls;
}

/** TLS of the server: its certificate, and how TCP clients authenticate (pg_hba.conf). */
export interface OwnPostgresTls {
  /** server certificate and key, PEM files (copied: PostgreSQL wants its own, private key file) */
  readonly certFile: string;
  readonly keyFile: string;
  /** CA that client certificates must chain to (ssl_ca_file); required by `cert` */
  readonly caFile?: string;
  /**
   * `cert`: a client certificate chaining to `caFile` whose CN is the user name (`hostssl ... cert`).
   * `trust` (default): any TLS client.
   */
  readonly clientAuth?: 'cert' | 'trust';
}

export interface TerminateFilter {
  /** only connections reporting this application_name */
  readonly applicationName?: string;
  /** only connections to this database (default: the test database) */
  readonly database?: string;
}

export interface OwnPostgres {
  readonly host: '127.0.0.1';
  readonly port: number;
  readonly user: string;
  readonly database: string;
  /** postgres://user@127.0.0.1:port/database */
  readonly url: string;
  /** the data directory's parent: data/, the server log and the socket live there */
  readonly dir: string;
  /** The server and a schema as a COS process's environment (COS_POSTGRES_*). */
  cosEnv(schema: string): Record<string, string>;
  /** pid of the running postmaster (from postmaster.pid) */
  postmasterPid(): number | undefined;
  /** `pg_ctl restart -m fast`: every connection is cut, the server is back when this resolves */
  restart(): Promise<void>;
  /** `pg_ctl stop -m fast` */
  stop(): Promise<void>;
  /** `pg_ctl start`, waits until it accepts connections */
  start(): Promise<void>;
  /** SIGSTOP to the postmaster and every process under it: connections stay open, nothing answers */
  stall(): Promise<void>;
  /** SIGCONT to every process stall() stopped (and any under the postmaster now) */
  resume(): void;
  /** pg_terminate_backend of client connections matching the filter; resolves with how many */
  terminateBackends(filter?: TerminateFilter): Promise<number>;
  /** the server's log so far */
  log(): string;
  /** resumes if stalled, stops the server, removes the directory; safe to call more than once */
  dispose(): Promise<void>;
}

/** The PostgreSQL binaries' directory, or undefined when initdb is nowhere to be found. */
export function findPostgresBinDir(): string | undefined {
  const candidates = [
    process.env['COS_TEST_PG_BIN'],
    ...(process.env['PATH'] ?? '').split(':'),
    '/usr/local/bin',
    ...versionedBinDirs('/usr/lib/postgresql'),
  ].filter((dir): dir is string => !!dir);
  return candidates.find((dir) => existsSync(join(dir, 'initdb')) && existsSync(join(dir, 'pg_ctl')));
}

function versionedBinDirs(root: string): string[] {
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .sort((a, b) => Number(b) - Number(a))
    .map((version) => join(root, version, 'bin'));
}

export async function startOwnPostgres(options: OwnPostgresOptions = {}): Promise<OwnPostgres> {
  const binDir = options.binDir ?? findPostgresBinDir();
  if (!binDir) throw new Error('startOwnPostgres: initdb/pg_ctl not found (set COS_TEST_PG_BIN)');
  const database = options.database ?? 'cos';
  const timeoutMs = options.timeoutMs ?? 60_000;
  const account = process.getuid?.() === 0 ? osAccount(options.osUser ?? 'postgres') : undefined;
  const dir = mkdtempSync(join(tmpdir(), 'cos-pg-'));
  if (account) chownSync(dir, account.uid, account.gid);
  const data = join(dir, 'data');
  const logFile = join(dir, 'postgres.log');
  const port = await freePort();
  const user = 'postgres';

  const run = (binary: string, args: string[]) => runAs(account, join(binDir, binary), args, timeoutMs);
  const pgCtl = (...args: string[]) => run('pg_ctl', [...args, '-D', data, '-w', '-t', String(Math.ceil(timeoutMs / 1000))]);
  const postmasterPid = (): number | undefined => {
    try {
      const pid = Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
      return pid > 0 ? pid : undefined;
    } catch {
      return undefined;
    }
  };

  let stalled = new Set<number>();
  let disposed = false;
  const resume = () => {
    const pid = postmasterPid();
    const all = new Set([...stalled, ...(pid ? [pid, ...descendants(pid)] : [])]);
    stalled = new Set();
    for (const each of all) signal(each, 'SIGCONT');
  };
  // Last resort if the test process exits without dispose(): no stopped server, no stray dir.
  const onExit = () => {
    resume();
    const pid = postmasterPid();
    if (pid) for (const each of [pid, ...descendants(pid)]) signal(each, 'SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', onExit);
  const guardian = startGuardian(dir);

  const admin = async <T>(work: (client: pg.Client) => Promise<T>, db = 'postgres'): Promise<T> => {
    const client = new pg.Client({
      // with TLS, TCP demands a certificate the harness does not hold: the Unix socket is trusted
      host: options.tls ? dir : '127.0.0.1',
      ssl: false,
      port,
      user,
      database: db,
      connectionTimeoutMillis: 5_000,
      query_timeout: 10_000,
      application_name: 'own-postgres-admin',
    });
    client.on('error', () => {});
    await client.connect();
    try {
      return await work(client);
    } finally {
      await client.end().catch(() => {});
    }
  };

  try {
    await run('initdb', ['-D', data, '-U', user, '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync']);
    const tlsSettings = options.tls ? installTls(options.tls, dir, data, account) : {};
    await appendFile(data + '/postgresql.conf', postgresqlConf(port, dir, { ...tlsSettings, ...options.settings }));
    writeFileSync(logFile, '');
    if (account) chownSync(logFile, account.uid, account.gid);
    await pgCtl('start', '-l', logFile);
    await admin((client) => client.query(`create database ${pg.escapeIdentifier(database)}`));
  } catch (error) {
    await disposeServer();
    throw error;
  }

  async function disposeServer(): Promise<void> {
    resume();
    if (postmasterPid()) {
      await pgCtl('stop', '-m', 'immediate').catch(() => {
        const pid = postmasterPid();
        if (pid) for (const each of [pid, ...descendants(pid)]) signal(each, 'SIGKILL');
      });
    }
    rmSync(dir, { recursive: true, force: true });
    process.removeListener('exit', onExit);
    guardian.kill('SIGKILL');
  }

  return {
    host: '127.0.0.1',
    port,
    user,
    database,
    url: `postgres://${user}@127.0.0.1:${port}/${database}`,
    dir,
    cosEnv: (schema) => ({
      COS_POSTGRES_HOST: '127.0.0.1',
      COS_POSTGRES_PORT: String(port),
      COS_POSTGRES_USER: user,
      COS_POSTGRES_PASSWORD: 'unused',
      COS_POSTGRES_DB: database,
      COS_POSTGRES_SCHEMA: schema,
    }),
    postmasterPid,
    async restart() {
      resume();
      await pgCtl('restart', '-m', 'fast', '-l', logFile);
    },
    async stop() {
      resume();
      await pgCtl('stop', '-m', 'fast');
    },
    async start() {
      await pgCtl('start', '-l', logFile);
    },
    async stall() {
      const pid = postmasterPid();
      if (!pid) throw new Error('stall: the server is not running');
      // The postmaster first, so it forks nothing new while its children are being stopped.
      signal(pid, 'SIGSTOP');
      stalled.add(pid);
      for (const child of descendants(pid)) {
        signal(child, 'SIGSTOP');
        stalled.add(child);
      }
      await waitUntil(() => [...stalled].every((each) => isStoppedOrGone(processState(each))), 2_000, 'the server to stop');
    },
    resume,
    terminateBackends(filter = {}) {
      const db = filter.database ?? database;
      return admin(async (client) => {
        // materialized first: the planner may otherwise call pg_terminate_backend before the filter
        const result = await client.query<{ terminated: string }>(
          `with victims as materialized (
             select pid from pg_stat_activity
              where backend_type = 'client backend' and pid <> pg_backend_pid()
                and datname = $1 and ($2::text is null or application_name = $2))
           select count(*) filter (where pg_terminate_backend(pid)) as terminated from victims`,
          [db, filter.applicationName ?? null],
        );
        return Number(result.rows[0]?.terminated ?? 0);
      });
    },
    log: () => {
      try {
        return readFileSync(logFile, 'utf8');
      } catch {
        return '';
      }
    },
    async dispose() {
      if (disposed) return;
      disposed = true;
      await disposeServer();
    },
  };
}

/**
 * Copies the server's certificate and key where PostgreSQL accepts them (owned by its user, key
 * mode 0600), and replaces pg_hba.conf: the Unix socket trusted, TCP over TLS only.
 */
function installTls(tls: OwnPostgresTls, dir: string, data: string, account: OsAccount | undefined): Record<string, string> {
  if (tls.clientAuth === 'cert' && tls.caFile === undefined) throw new Error('startOwnPostgres: clientAuth cert needs caFile');
  const tlsDir = join(dir, 'tls');
  mkdirSync(tlsDir);
  const files = { ssl_cert_file: ['server.crt', tls.certFile], ssl_key_file: ['server.key', tls.keyFile], ssl_ca_file: ['ca.crt', tls.caFile] } as const;
  const settings: Record<string, string> = { ssl: 'on' };
  for (const [setting, [name, source]] of Object.entries(files)) {
    if (source === undefined) continue;
    const target = join(tlsDir, name);
    copyFileSync(source, target);
    chmodSync(target, 0o600);
    if (account) chownSync(target, account.uid, account.gid);
    settings[setting] = target;
  }
  if (account) chownSync(tlsDir, account.uid, account.gid);
  const method = tls.clientAuth ?? 'trust';
  writeFileSync(
    join(data, 'pg_hba.conf'),
    ['local all all trust', `hostssl all all 127.0.0.0/8 ${method}`, 'hostnossl all all 127.0.0.0/8 reject', ''].join('\n'),
  );
  return settings;
}

/**
 * A shell that outlives a test process killed outright (SIGKILL, a worker torn down: no 'exit'
 * event), then kills the server, stopped or not, and removes its directory.
 */
function startGuardian(dir: string): ChildProcess {
  const script = `
    while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done
    pid=$(head -n 1 "${dir}/data/postmaster.pid" 2>/dev/null)
    if [ -n "$pid" ]; then
      for child in $(ps -o pid= --ppid "$pid"); do kill -9 "$child" 2>/dev/null; done
      kill -9 "$pid" 2>/dev/null
    fi
    rm -rf "${dir}"`;
  const child = spawn('/bin/sh', ['-c', script], { detached: true, stdio: 'ignore' });
  child.unref();
  return child;
}

function postgresqlConf(port: number, socketDir: string, settings: Readonly<Record<string, string | number>>): string {
  const all: Record<string, string | number> = {
    listen_addresses: "'127.0.0.1'",
    port,
    unix_socket_directories: `'${socketDir}'`,
    max_connections: 100,
    shared_buffers: "'32MB'",
    // durability is not under test; speed is
    fsync: 'off',
    synchronous_commit: 'off',
    full_page_writes: 'off',
    ...Object.fromEntries(Object.entries(settings).map(([key, value]) => [key, typeof value === 'string' ? `'${value}'` : value])),
  };
  return '\n# own-postgres (test)\n' + Object.entries(all).map(([key, value]) => `${key} = ${value}\n`).join('');
}

interface OsAccount {
  readonly uid: number;
  readonly gid: number;
}

function osAccount(name: string): OsAccount {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((each) => each.split(':')[0] === name);
  if (!line) throw new Error(`startOwnPostgres: no OS user ${name} to run PostgreSQL as (it refuses root)`);
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

function runAs(account: OsAccount | undefined, file: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      {
        ...(account ? { uid: account.uid, gid: account.gid } : {}),
        env: { PATH: process.env['PATH'] ?? '', LANG: 'C', LC_ALL: 'C' },
        cwd: tmpdir(),
        timeout: timeoutMs,
        killSignal: 'SIGKILL',
      },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`${file} ${args.join(' ')} failed: ${error.message}\n${stdout}${stderr}`));
        else resolve(stdout);
      },
    );
  });
}

/** Every process under `pid` (Linux /proc): the postmaster's backends and auxiliary processes. */
function descendants(pid: number): number[] {
  const parents = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const ppid = parentOf(Number(entry));
    if (ppid === undefined) continue;
    parents.set(ppid, [...(parents.get(ppid) ?? []), Number(entry)]);
  }
  const found: number[] = [];
  const queue = [pid];
  for (let next = queue.shift(); next !== undefined && found.length < 10_000; next = queue.shift()) {
    for (const child of parents.get(next) ?? []) {
      found.push(child);
      queue.push(child);
    }
  }
  return found;
}

function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // the command name is in parentheses and may itself contain spaces or parentheses
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

function parentOf(pid: number): number | undefined {
  const fields = statFields(pid);
  return fields ? Number(fields[1]) : undefined;
}

function processState(pid: number): string | undefined {
  return statFields(pid)?.[0];
}

function isStoppedOrGone(state: string | undefined): boolean {
  return state === undefined || state === 'T' || state === 't' || state === 'Z' || state === 'X';
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // already gone
  }
}

async function waitUntil(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

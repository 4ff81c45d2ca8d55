import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrateToLatest, type Database } from '@chiefofstate/postgres';
import { openTestDatabase, testStoreKinds, type TestDatabase } from '@chiefofstate/postgres/testing';
import { createLeaseCoordinator, type LeaseCoordinator, type ReleaseReason, type StreamHost } from './lease-coordinator.js';
import { loadClusterSecret } from './cluster-secret.js';
import { leaseMigrations } from './migrations.js';

const streams = (n: number, prefix = 's') => Array.from({ length: n }, (_, i) => `${prefix}:${String(i).padStart(2, '0')}`);

async function until(condition: () => boolean | Promise<boolean>, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * Hosts of several coordinators sharing one record of who runs what, so a stream run by two
 * processes at once is caught the moment it happens.
 */
function createWorld() {
  const running = new Map<string, string>();
  const overlaps: string[] = [];
  const log: { owner: string; event: 'acquired' | ReleaseReason; stream: string }[] = [];
  const host = (owner: string, releaseDelayMs = 0): StreamHost => ({
    acquired(stream) {
      log.push({ owner, event: 'acquired', stream });
      const other = running.get(stream);
      if (other !== undefined) overlaps.push(`${stream}: ${owner} while ${other}`);
      running.set(stream, owner);
    },
    async released(stream, reason) {
      log.push({ owner, event: reason, stream });
      if (releaseDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, releaseDelayMs));
      if (running.get(stream) === owner) running.delete(stream);
    },
  });
  const countOf = (owner: string) => [...running.values()].filter((o) => o === owner).length;
  return { running, overlaps, log, host, countOf };
}

describe.each(await testStoreKinds())('lease coordinator on %s', (kind) => {
  let database: TestDatabase;
  const coordinators: LeaseCoordinator[] = [];
  const coordinator = (db: Database, ownerId: string, leaseMs = 600, renewIntervalMs = 100) => {
    const created = createLeaseCoordinator({ database: db, ownerId, leaseMs, renewIntervalMs, onError: () => {} });
    coordinators.push(created);
    return created;
  };

  beforeAll(async () => {
    database = await openTestDatabase(kind);
    await migrateToLatest({ database, migrations: leaseMigrations });
  });
  afterAll(async () => {
    await Promise.all(coordinators.map((c) => c.close()));
    await database?.dispose();
  });

  it('a lone process takes every stream in its first round, and gives them all up on close', async () => {
    const world = createWorld();
    const a = coordinator(database, 'lone-a');
    await a.start(streams(16, 'lone'), world.host('lone-a'));
    expect(a.held()).toEqual(streams(16, 'lone'));
    expect(world.countOf('lone-a')).toBe(16);
    await a.close();
    expect(a.held()).toEqual([]);
    expect(world.running.size).toBe(0);
    expect(world.log.filter((e) => e.event === 'closing')).toHaveLength(16);
    // given up by expiring them: the rows stay, with their epochs
    const { rows } = await sql<{ n: number }>`
      SELECT count(*)::int AS n FROM cos_stream_leases WHERE owner = 'lone-a' AND expires_at > now()`.execute(database.kysely);
    expect(rows[0]!.n).toBe(0);
  });

  it('bumps the epoch of a stream at each acquisition, by any process, across releases and takeovers', async () => {
    const epochs: [string, string, bigint][] = [];
    const recording = (owner: string): StreamHost => ({
      acquired: (stream, epoch) => void epochs.push([owner, stream, epoch]),
      released: () => Promise.resolve(),
    });
    const all = streams(2, 'epoch');
    const a = coordinator(database, 'epoch-a');
    await a.start(all, recording('epoch-a'));
    expect(epochs).toEqual([
      ['epoch-a', 'epoch:00', 1n],
      ['epoch-a', 'epoch:01', 1n],
    ]);
    await a.close();
    const b = coordinator(database, 'epoch-b');
    await b.start(all, recording('epoch-b'));
    expect(epochs.slice(2)).toEqual([
      ['epoch-b', 'epoch:00', 2n],
      ['epoch-b', 'epoch:01', 2n],
    ]);
    const c = coordinator(database, 'epoch-c');
    await c.start(all, recording('epoch-c'));
    await until(() => epochs.length === 5, 10_000, 'c to take one stream');
    expect(epochs[4]![0]).toBe('epoch-c');
    expect(epochs[4]![2]).toBe(3n);
    const { rows } = await sql<{ stream: string; epoch: string }>`
      SELECT stream, epoch::text FROM cos_stream_leases WHERE stream = ANY(${all}::text[]) ORDER BY stream`.execute(database.kysely);
    expect(rows.map((row) => Number(row.epoch)).sort()).toEqual([2, 3]);
  });

  it('shares one cluster secret between the processes of a database, created once at random', async () => {
    const [first, second] = await Promise.all([loadClusterSecret(database), loadClusterSecret(database)]);
    expect(first.byteLength).toBe(32);
    expect(Buffer.from(second).equals(Buffer.from(first))).toBe(true);
    expect(Buffer.from(await loadClusterSecret(database)).equals(Buffer.from(first))).toBe(true);
    const other = await openTestDatabase(kind);
    try {
      await migrateToLatest({ database: other, migrations: leaseMigrations });
      expect(Buffer.from(await loadClusterSecret(other)).equals(Buffer.from(first))).toBe(false);
    } finally {
      await other.dispose();
    }
  });

  it('two processes split the streams evenly, never running one twice, and one takes all back when the other leaves', async () => {
    const world = createWorld();
    const all = streams(16, 'pair');
    const a = coordinator(database, 'pair-a');
    const b = coordinator(database, 'pair-b');
    await a.start(all, world.host('pair-a', 30));
    expect(a.held()).toHaveLength(16);
    await b.start(all, world.host('pair-b', 30));
    await until(() => world.countOf('pair-a') === 8 && world.countOf('pair-b') === 8, 10_000, '8/8');
    expect(world.overlaps).toEqual([]);
    // steady state: nothing moves any more
    const moves = world.log.length;
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(world.log.length).toBe(moves);
    expect([...a.held(), ...b.held()].sort()).toEqual(all);

    await b.close();
    await until(() => world.countOf('pair-a') === 16, 10_000, 'a to take all');
    expect(world.overlaps).toEqual([]);
  });

  it('three processes split 16 streams 6/5/5', async () => {
    const world = createWorld();
    const all = streams(16, 'three');
    const owners = ['three-a', 'three-b', 'three-c'];
    for (const owner of owners) await coordinator(database, owner).start(all, world.host(owner));
    await until(
      () => owners.map(world.countOf).join() === '6,5,5',
      10_000,
      '6/5/5',
    );
    expect(world.overlaps).toEqual([]);
  });

  it('covers every stream when processes run different sets', async () => {
    const world = createWorld();
    const x = streams(8, 'mixed-x');
    const y = streams(8, 'mixed-y');
    await coordinator(database, 'mixed-a').start([...x, ...y], world.host('mixed-a'));
    await coordinator(database, 'mixed-b').start(x, world.host('mixed-b'));
    await until(() => world.countOf('mixed-a') === 12 && world.countOf('mixed-b') === 4, 10_000, 'coverage');
    // b never runs a stream it does not know
    expect([...world.running].filter(([stream, owner]) => owner === 'mixed-b' && !x.includes(stream))).toEqual([]);
    expect(world.overlaps).toEqual([]);
  });

  it('tells the host at once when its lease was taken over', async () => {
    const world = createWorld();
    const a = coordinator(database, 'stolen-a');
    await a.start(streams(2, 'stolen'), world.host('stolen-a'));
    // another process took it (as it would after expiry): the next renewal finds out
    await sql`UPDATE cos_stream_leases SET owner = 'someone-else', expires_at = now() + interval '1 hour'
              WHERE stream = 'stolen:00'`.execute(database.kysely);
    await until(() => world.log.some((e) => e.event === 'lost' && e.stream === 'stolen:00'), 5_000, 'lost');
    expect(a.held()).toEqual(['stolen:01']);
  });

  it('with addresses, each process learns who holds every stream and where', async () => {
    const world = createWorld();
    const all = streams(8, 'addr');
    const make = (ownerId: string, address: string) => {
      const created = createLeaseCoordinator({ database, ownerId, address, leaseMs: 600, renewIntervalMs: 100, onError: () => {} });
      coordinators.push(created);
      return created;
    };
    const a = make('addr-a', '10.0.0.1:9000');
    const b = make('addr-b', '10.0.0.2:9000');
    await a.start(all, world.host('addr-a'));
    await b.start(all, world.host('addr-b'));
    await until(() => a.held().length === 4 && b.held().length === 4, 10_000, 'a 4/4 split');
    await until(() => a.members() === 2 && b.members() === 2, 10_000, 'both counting two members');
    // the next rounds of both have seen the split
    await until(() => all.every((s) => a.ownerOf(s) !== undefined && b.ownerOf(s) !== undefined), 10_000, 'owners known');
    for (const stream of all) {
      const [holder, other] = a.held().includes(stream) ? [a, b] : [b, a];
      expect(holder.ownerOf(stream)).toMatchObject({ ownerId: holder.ownerId, self: true });
      expect(other.ownerOf(stream)).toEqual({
        ownerId: holder.ownerId,
        address: holder === a ? '10.0.0.1:9000' : '10.0.0.2:9000',
        self: false,
      });
    }
    await b.close();
    // a takes b's streams over; b is not named an owner any more
    await until(() => a.held().length === 8, 10_000, 'a holding all');
    await until(() => a.members() === 1, 10_000, 'a counting itself only');
    for (const stream of all) expect(a.ownerOf(stream)?.self).toBe(true);
    await a.close();
  });

  it('refuses a renewal interval that leaves no margin', () => {
    expect(() => createLeaseCoordinator({ database, leaseMs: 1000, renewIntervalMs: 500 })).toThrow(/renewIntervalMs/);
  });
});

const hasServer = (await testStoreKinds()).includes('postgres');

describe.runIf(hasServer)('lease coordinator takeover on PostgreSQL', () => {
  it('takes over the streams of a process whose database connection died, after its leases expired, never running one twice', async () => {
    const world = createWorld();
    const first = await openTestDatabase('postgres');
    await migrateToLatest({ database: first, migrations: leaseMigrations });
    // the second process: its own pool on the same schema
    const second = await openTestDatabase('postgres', first.schema);
    const all = streams(16, 'takeover');
    const leaseMs = 800;
    const a = createLeaseCoordinator({ database: first, ownerId: 'takeover-a', leaseMs, renewIntervalMs: 100, onError: () => {} });
    const b = createLeaseCoordinator({ database: second, ownerId: 'takeover-b', leaseMs, renewIntervalMs: 100, onError: () => {} });
    try {
      await a.start(all, world.host('takeover-a'));
      await b.start(all, world.host('takeover-b'));
      await until(() => world.countOf('takeover-a') === 8 && world.countOf('takeover-b') === 8, 10_000, '8/8');

      // b's database goes away (as if the process hung or was cut off): it stops trusting its
      // leases on its own clock, before they expire in the database, and a takes over after.
      await second.close();
      const cutAt = Date.now();
      await until(() => world.countOf('takeover-a') === 16, 10_000, 'takeover');
      const tookMs = Date.now() - cutAt;
      expect(tookMs).toBeGreaterThanOrEqual(leaseMs - 300);
      expect(tookMs).toBeLessThan(leaseMs + 2_000);
      expect(world.log.filter((e) => e.owner === 'takeover-b' && e.event === 'lost')).toHaveLength(8);
      expect(world.overlaps).toEqual([]);
    } finally {
      await a.close();
      await b.close().catch(() => {});
      await first.dispose();
    }
  });
});

const packageDir = fileURLToPath(new URL('..', import.meta.url));

/** The epoch of each of `streams`' leases, and who holds them now (unexpired). */
async function leaseRows(database: Database, streams: readonly string[]) {
  const { rows } = await sql<{ stream: string; owner: string; epoch: string; live: boolean }>`
    SELECT stream, owner, epoch::text, expires_at > now() AS live FROM cos_stream_leases
    WHERE stream = ANY(${streams}::text[]) ORDER BY stream`.execute(database.kysely);
  return new Map(rows.map((row) => [row.stream, { owner: row.live ? row.owner : undefined, epoch: BigInt(row.epoch) }]));
}

/** The backend holding `owner`'s session lock, from the key it publishes. */
async function sessionBackend(database: Database, owner: string): Promise<number | undefined> {
  const { rows } = await sql<{ pid: number }>`
    SELECT l.pid FROM cos_stream_members m
    JOIN pg_locks l ON l.locktype = 'advisory' AND l.granted AND l.classid = ${0x434f534c}::bigint::oid AND l.objsubid = 2
      AND l.objid = ((m.session_lock::bigint + 4294967296) % 4294967296)::oid
    WHERE m.owner = ${owner} AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`.execute(database.kysely);
  return rows[0]?.pid;
}

describe.runIf(hasServer)('fast takeover on PostgreSQL: a process whose session ended', () => {
  // long leases: a takeover well before they could expire can only be the fast one
  const leaseMs = 5000;
  let first: TestDatabase;
  let second: TestDatabase;
  const coordinators: LeaseCoordinator[] = [];
  /** the owners each coordinator reported taking over, by its own owner id */
  const takeovers = new Map<string, string[]>();
  const start = async (database: Database, ownerId: string, all: string[], host: StreamHost, onError: (error: unknown) => void = () => {}) => {
    const onTakeover = (dead: string) => takeovers.set(ownerId, [...(takeovers.get(ownerId) ?? []), dead]);
    const created = createLeaseCoordinator({ database, ownerId, leaseMs, renewIntervalMs: 100, onError, onTakeover });
    coordinators.push(created);
    await created.start(all, host);
    return created;
  };
  /** The session lock key `owner` publishes with its heartbeat. */
  const publishedKey = async (owner: string) =>
    (await sql<{ key: number | null }>`SELECT session_lock AS key FROM cos_stream_members WHERE owner = ${owner}`.execute(first.kysely)).rows[0]?.key;

  beforeAll(async () => {
    first = await openTestDatabase('postgres');
    await migrateToLatest({ database: first, migrations: leaseMigrations });
    second = await openTestDatabase('postgres', first.schema);
  });
  afterAll(async () => {
    await Promise.all(coordinators.map((c) => c.close()));
    await second?.close();
    await first?.dispose();
  });

  /** A process holding leases on `all` (test/lease-holder.ts), started. */
  async function startHolder(owner: string, all: string[]) {
    const child = spawn(process.execPath, ['--conditions=@chiefofstate/source', '--import', 'tsx', 'test/lease-holder.ts'], {
      cwd: packageDir,
      env: { ...process.env, COS_TEST_SCHEMA: first.schema, COS_TEST_OWNER: owner, COS_TEST_LEASE_MS: String(leaseMs), COS_TEST_STREAMS: all.join(',') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    const exited = once(child, 'exit');
    try {
      await until(() => output.includes('ready\n') || child.exitCode !== null, 30_000, 'the child to start');
      expect(output).toBe('ready\n');
    } catch (error) {
      child.kill('SIGKILL');
      throw error;
    }
    return {
      async kill() {
        child.kill('SIGKILL');
        await exited;
      },
    };
  }

  it('takes over the leases of a process killed with SIGKILL within a round or two, with higher epochs, long before they expire', async () => {
    const all = streams(16, 'killed');
    const child = await startHolder('killed-child', all);
    try {
      const world = createWorld();
      const a = await start(first, 'killed-a', all, world.host('killed-a'));
      const childHolds = async () => [...(await leaseRows(first, all)).values()].filter((row) => row.owner === 'killed-child').length;
      await until(async () => a.held().length === 8 && (await childHolds()) === 8, 10_000, '8/8');
      expect(await sessionBackend(first, 'killed-child')).toBeDefined();
      const before = await leaseRows(first, all);

      await child.kill();
      const killedAt = Date.now();
      await until(() => a.held().length === 16, 10_000, 'the takeover');
      const tookMs = Date.now() - killedAt;
      console.info(`a SIGKILLed process's 8 leases (${leaseMs} ms) taken over after ${tookMs} ms`);
      expect(tookMs).toBeLessThan(1500);
      const after = await leaseRows(first, all);
      for (const [stream, row] of before) {
        expect(after.get(stream)?.owner).toBe('killed-a');
        if (row.owner === 'killed-child') expect(after.get(stream)!.epoch).toBe(row.epoch + 1n);
        else expect(after.get(stream)!.epoch).toBe(row.epoch);
      }
      // its heartbeat was expired with its leases: it no longer counts
      expect(a.members()).toBe(1);
      expect(takeovers.get('killed-a')).toEqual(['killed-child']);
      await a.close();
    } finally {
      await child.kill();
    }
  });

  it('looks the holder of a stream up at once when told it is unreachable, and takes its leases before the next round', async () => {
    const all = streams(8, 'unreachable');
    const child = await startHolder('unreachable-child', all);
    try {
      const world = createWorld();
      // rounds far apart: a takeover within a fraction of one was not a round's doing
      const renewIntervalMs = 2000;
      const a = createLeaseCoordinator({ database: first, ownerId: 'unreachable-a', address: '10.0.0.1:9000', leaseMs, renewIntervalMs, onError: () => {} });
      coordinators.push(a);
      await a.start(all, world.host('unreachable-a'));
      await until(() => a.held().length === 4 && all.some((stream) => a.ownerOf(stream)?.ownerId === 'unreachable-child'), 10_000, '4/4 known');
      const theirs = all.find((stream) => a.ownerOf(stream)?.ownerId === 'unreachable-child')!;
      // told while the child lives: nothing moves (up to and through a's next round)
      const heartbeatOfA = async () =>
        (await sql<{ at: Date }>`SELECT expires_at AS at FROM cos_stream_members WHERE owner = 'unreachable-a'`.execute(first.kysely)).rows[0]!.at.getTime();
      const beat = await heartbeatOfA();
      a.ownerUnreachable(theirs);
      await until(async () => (await heartbeatOfA()) !== beat, 10_000, "a's next round");
      expect(a.held()).toHaveLength(4);

      await child.kill();
      const killedAt = Date.now();
      a.ownerUnreachable(theirs);
      await until(() => a.held().length === 8, 10_000, 'the takeover');
      const tookMs = Date.now() - killedAt;
      console.info(`told its holder is unreachable, a process took a SIGKILLed one's 4 leases over after ${tookMs} ms (rounds every ${renewIntervalMs} ms)`);
      expect(tookMs).toBeLessThan(renewIntervalMs / 2);
      expect(world.overlaps).toEqual([]);
      await a.close();
    } finally {
      await child.kill();
    }
  });

  it('leaves the leases of a live process alone, and those of one whose session was terminated are given up at once and taken over; it comes back with a new session', async () => {
    const world = createWorld();
    const all = streams(16, 'alive');
    const a = await start(first, 'alive-a', all, world.host('alive-a'));
    const b = await start(second, 'alive-b', all, world.host('alive-b'));
    await until(() => world.countOf('alive-a') === 8 && world.countOf('alive-b') === 8, 10_000, '8/8');
    const settled = await leaseRows(first, all);
    // a live process's session lock is held: ten rounds of probing change nothing
    const moves = world.log.length;
    const rounds = async (n: number) => {
      const beats = new Set<number>();
      await until(
        async () => {
          const { rows } = await sql<{ at: Date }>`SELECT expires_at AS at FROM cos_stream_members WHERE owner = 'alive-a'`.execute(first.kysely);
          beats.add(rows[0]!.at.getTime());
          return beats.size > n;
        },
        10_000,
        `${n} rounds`,
      );
    };
    await rounds(10);
    expect(world.log.length).toBe(moves);
    expect(await leaseRows(first, all)).toEqual(settled);

    // b's session is ended under it (b lives on): b gives its leases up at once, a takes them
    // in its next round, and b, with a new session, takes its share back
    const pid = await sessionBackend(first, 'alive-b');
    expect(pid).toBeDefined();
    const endedAt = Date.now();
    await sql`SELECT pg_terminate_backend(${pid}::int)`.execute(first.kysely);
    await until(() => world.log.filter((e) => e.owner === 'alive-b' && e.event === 'lost').length === 8, 5_000, 'b to give its leases up');
    await until(() => world.countOf('alive-a') + world.countOf('alive-b') === 16 && world.countOf('alive-b') === 8, 10_000, '8/8 again');
    const tookMs = Date.now() - endedAt;
    expect(tookMs).toBeLessThan(leaseMs);
    expect(world.overlaps).toEqual([]);
    let newPid: number | undefined;
    await until(async () => (newPid = await sessionBackend(first, 'alive-b')) !== undefined, 5_000, 'b to publish a new session lock');
    expect(newPid).not.toBe(pid);
    // every stream b held was acquired again, by a or by b: its epoch moved on
    const after = await leaseRows(first, all);
    for (const [stream, row] of settled) {
      if (row.owner === 'alive-b') expect(after.get(stream)!.epoch).toBeGreaterThan(row.epoch);
    }
    await b.close();
    await a.close();
  });

  it('turns fast takeover off for a process whose session is answered by another server process than its lock (a pooler in transaction mode)', async () => {
    // a session as such a pooler makes it look: each statement may reach another backend
    let pid = 100;
    let closed = false;
    const pooled: Database = {
      ...first,
      openSession: () =>
        Promise.resolve({
          query: <R>(text: string) => Promise.resolve([(text.includes('pg_try_advisory_lock') ? { locked: true, pid: pid++ } : { pid: pid++ }) as R]),
          ended: new Promise<unknown>(() => {}),
          close: () => Promise.resolve(void (closed = true)),
        }),
    };
    const errors: unknown[] = [];
    const world = createWorld();
    const all = streams(4, 'pooled');
    // (nobody else runs here: another process would take its leases while its key is published)
    const a = await start(pooled, 'pooled-a', all, world.host('pooled-a'), (e) => errors.push(e));
    expect(await publishedKey('pooled-a')).not.toBeNull();
    await until(async () => closed && (await publishedKey('pooled-a')) === null, 5_000, 'the key withdrawn');
    expect(String(errors[0])).toMatch(/another server process.*Fast takeover is off/);
    // it keeps its leases, now on expiry alone
    expect(a.held()).toEqual(all);
    expect(world.log.filter((e) => e.event !== 'acquired')).toEqual([]);
    await a.close();
  });

  it('runs on lease expiry alone while it cannot open its session, trying again less and less often', async () => {
    let attempts = 0;
    const refusing: Database = {
      ...first,
      openSession: () => {
        attempts++;
        return Promise.reject(new Error('sorry, too many clients already'));
      },
    };
    const errors: unknown[] = [];
    const world = createWorld();
    const all = streams(4, 'refused');
    const a = await start(refusing, 'refused-a', all, world.host('refused-a'), (e) => errors.push(e));
    expect(a.held()).toEqual(all);
    const startedAt = Date.now();
    // attempts at 0, then after 0.1, 0.2, 0.4 s more (rounds every 0.1 s): the fourth at 0.7 s
    await until(() => attempts >= 4, 10_000, 'four attempts');
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(600);
    await until(() => errors.length >= 4, 5_000, 'four reports');
    expect(String(errors[0])).toMatch(/too many clients/);
    expect(await publishedKey('refused-a')).toBeNull();
    expect(a.held()).toEqual(all);
    await a.close();
  });
});

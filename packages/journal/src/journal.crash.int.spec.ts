import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrateToLatest } from '@chiefofstate/postgres';
import { openTestDatabase, testStoreKinds, type TestDatabase } from '@chiefofstate/postgres/testing';
import { journalMigrations } from './schema.js';

const hasServer = (await testStoreKinds()).includes('postgres');
const packageDir = fileURLToPath(new URL('..', import.meta.url));

describe.runIf(hasServer)('journal after a writer is killed (SIGKILL) under load, real PostgreSQL', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await openTestDatabase('postgres');
    await migrateToLatest({ database, migrations: journalMigrations });
  });
  afterAll(async () => {
    await database?.dispose();
  });

  it('holds every append the writer reported as committed, exactly once, with contiguous revisions', async () => {
    const child = spawn(process.execPath, ['--conditions=@chiefofstate/source', '--import', 'tsx', 'test/crash-writer.ts'], {
      cwd: packageDir,
      env: { ...process.env, COS_TEST_SCHEMA: database.schema, COS_TEST_WRITERS: '64' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const exited = once(child, 'exit');

    // kill it mid-load: after it has reported a good number of commits
    const deadline = Date.now() + 20_000;
    while ((stdout.match(/\n/g)?.length ?? 0) < 3000 && Date.now() < deadline && child.exitCode === null) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(child.exitCode, stderr).toBeNull();
    child.kill('SIGKILL');
    const [code, signal] = await exited;
    expect([code, signal]).toEqual([null, 'SIGKILL']);

    // complete lines only: a line cut by the kill was never fully reported
    const lines = stdout.slice(0, stdout.lastIndexOf('\n')).split('\n');
    expect(lines.shift()).toBe('ready');
    const reported = lines.map((line) => {
      const [entityId, first, last] = line.split(' ');
      return { entityId: entityId!, first: BigInt(first!), last: BigInt(last!) };
    });
    expect(reported.length).toBeGreaterThanOrEqual(3000);

    const { rows } = await sql<{ entity_id: string; revision: bigint; payload: Uint8Array }>`
      SELECT entity_id, revision, payload FROM cos_journal ORDER BY entity_id, revision`.execute(database.kysely);
    const stored = new Map<string, number>();
    const byEntity = new Map<string, bigint[]>();
    for (const row of rows) {
      const key = `${row.entity_id}@${row.revision}`;
      stored.set(key, (stored.get(key) ?? 0) + 1);
      // the payload written for that revision, not some other one
      expect(new TextDecoder().decode(row.payload)).toBe(key);
      const revisions = byEntity.get(row.entity_id) ?? [];
      revisions.push(row.revision);
      byEntity.set(row.entity_id, revisions);
    }
    // every reported append is there, each revision exactly once
    for (const { entityId, first, last } of reported) {
      for (let revision = first; revision <= last; revision++) expect(stored.get(`${entityId}@${revision}`)).toBe(1);
    }
    expect([...stored.values()].every((n) => n === 1)).toBe(true);
    // every entity's revisions run 1, 2, 3, ... without holes
    expect(byEntity.size).toBe(64);
    for (const revisions of byEntity.values()) expect(revisions).toEqual(revisions.map((_, i) => BigInt(i + 1)));
    // the table may hold appends committed but not yet reported when the kill came; no more
    const reportedEvents = reported.reduce((n, r) => n + Number(r.last - r.first + 1n), 0);
    expect(rows.length).toBeGreaterThanOrEqual(reportedEvents);
    expect(rows.length - reportedEvents).toBeLessThanOrEqual(3 * 64);
  });
});

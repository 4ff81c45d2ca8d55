import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { createDatabase, type Database, type PostgresConnectionOptions } from './database.js';

/**
 * Test support for store contract suites: the same suite runs against the embedded store
 * (PGlite, in memory) and the real PostgreSQL. The server is required when CI=true; elsewhere
 * its suites are skipped when it is unreachable.
 */

export type TestStoreKind = 'embedded' | 'postgres';

export interface TestDatabase extends Database {
  /** drops the test schema (postgres) and closes the database */
  dispose(): Promise<void>;
}

/** Connection settings of the test server, from COS_TEST_POSTGRES_URL or the CI default. */
export function testPostgresConnection(schema: string): PostgresConnectionOptions {
  const url = new URL(process.env['COS_TEST_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test');
  return {
    kind: 'postgres',
    host: url.hostname,
    port: Number(url.port || 5432),
    user: decodeURIComponent(url.username || 'postgres'),
    password: decodeURIComponent(url.password),
    database: url.pathname.slice(1) || 'test',
    schema,
    poolMax: 8,
  };
}

/** The test server and a schema as a COS process's environment (COS_POSTGRES_*), for end-to-end tests. */
export function testPostgresEnv(schema: string): Record<string, string> {
  const db = testPostgresConnection(schema);
  return {
    COS_POSTGRES_HOST: db.host,
    COS_POSTGRES_PORT: String(db.port),
    COS_POSTGRES_USER: db.user,
    COS_POSTGRES_PASSWORD: db.password || 'unused',
    COS_POSTGRES_DB: db.database,
    COS_POSTGRES_SCHEMA: schema,
  };
}

/** A fresh, unique schema name, so concurrently running test files never share tables. */
export function uniqueSchemaName(prefix = 't'): string {
  return `${prefix}_${randomBytes(6).toString('hex')}`;
}

let reachable: Promise<boolean> | undefined;

/** Whether the test PostgreSQL answers (cached per process). */
export function isTestPostgresReachable(): Promise<boolean> {
  reachable ??= (async () => {
    const options = testPostgresConnection('public');
    const client = new pg.Client({ ...options, connectionTimeoutMillis: 2000 });
    try {
      await client.connect();
      await client.query('select 1');
      return true;
    } catch {
      return false;
    } finally {
      await client.end().catch(() => {});
    }
  })();
  return reachable;
}

/**
 * The store kinds a contract suite must run against: always the embedded store; the real
 * PostgreSQL when reachable, and always when CI=true (so an unreachable server fails CI).
 */
export async function testStoreKinds(): Promise<TestStoreKind[]> {
  const required = process.env['CI'] === 'true';
  return required || (await isTestPostgresReachable()) ? ['embedded', 'postgres'] : ['embedded'];
}

/** Opens a test database of the given kind in a schema of its own. */
export async function openTestDatabase(kind: TestStoreKind, schema = uniqueSchemaName()): Promise<TestDatabase> {
  if (kind === 'embedded') {
    const database = await createDatabase({ kind: 'embedded', schema });
    return { ...database, dispose: () => database.close() };
  }
  const options = testPostgresConnection(schema);
  const database = await createDatabase(options);
  return {
    ...database,
    async dispose() {
      await database.close();
      const client = new pg.Client(options);
      await client.connect();
      try {
        await client.query(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(schema)} CASCADE`);
      } finally {
        await client.end();
      }
    },
  };
}

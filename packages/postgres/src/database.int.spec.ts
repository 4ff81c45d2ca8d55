import { sql, type Kysely } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDatabase } from './database.js';
import { isUniqueViolation } from './sql-errors.js';
import { migrateToLatest, mergeMigrations, type MigrationSet } from './migrations.js';
import { openTestDatabase, testStoreKinds, uniqueSchemaName, type TestDatabase } from './testing.js';

type Tables = {
  items: { id: bigint; name: string; payload: Uint8Array };
};

const migrations: MigrationSet = {
  '2026-01-01-001-items': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('items')
        .addColumn('id', 'bigint', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull().unique())
        .addColumn('payload', 'bytea', (c) => c.notNull())
        .execute();
    },
  },
  '2026-01-01-002-items-index': {
    async up(db: Kysely<unknown>) {
      await db.schema.createIndex('items_name_payload').on('items').columns(['name', 'payload']).execute();
    },
  },
};

describe.each(await testStoreKinds())('database on %s', (kind) => {
  const opened: TestDatabase[] = [];
  const open = async (schema?: string) => {
    const database = await openTestDatabase(kind, schema);
    opened.push(database);
    return database;
  };
  afterEach(async () => {
    // dispose in reverse so the schema-dropping handle closes last
    for (const d of opened.splice(0).reverse()) await d.dispose().catch(() => {});
  });

  it('returns int8 as bigint and bytea as Uint8Array', async () => {
    const database = await open();
    await migrateToLatest({ database, migrations });
    const db = database.kysely.withTables<Tables>();
    const big = 9_007_199_254_740_993n; // above Number.MAX_SAFE_INTEGER
    await db.insertInto('items').values({ id: big, name: 'a', payload: new Uint8Array([1, 2, 3]) }).execute();
    const row = await db.selectFrom('items').selectAll().executeTakeFirstOrThrow();
    expect(row.id).toBe(big);
    expect(row.payload).toBeInstanceOf(Uint8Array);
    expect([...row.payload]).toEqual([1, 2, 3]);
    const { count } = await db
      .selectFrom('items')
      .select((eb) => eb.fn.countAll<bigint>().as('count'))
      .executeTakeFirstOrThrow();
    expect(count).toBe(1n);
  });

  it('reports unique violations as SQLSTATE 23505', async () => {
    const database = await open();
    await migrateToLatest({ database, migrations });
    const db = database.kysely.withTables<Tables>();
    await db.insertInto('items').values({ id: 1n, name: 'x', payload: new Uint8Array() }).execute();
    const error = await db
      .insertInto('items')
      .values({ id: 2n, name: 'x', payload: new Uint8Array() })
      .execute()
      .catch((e: unknown) => e);
    expect(isUniqueViolation(error)).toBe(true);
    expect(isUniqueViolation(new Error('other'))).toBe(false);
  });

  it('runs migrations once, and a second run is a no-op', async () => {
    const database = await open();
    const first = await migrateToLatest({ database, migrations });
    expect(first.results?.map((r) => r.status)).toEqual(['Success', 'Success']);
    const second = await migrateToLatest({ database, migrations });
    expect(second.results).toEqual([]);
    const tables = await sql<{ table_name: string }>`
      select table_name from information_schema.tables where table_schema = ${database.schema} order by 1`.execute(
      database.kysely,
    );
    expect(tables.rows.map((r) => r.table_name)).toEqual(['cos_migrations', 'cos_migrations_lock', 'items']);
  });

  it('keeps transactions of concurrent callers apart', async () => {
    const database = await open();
    await migrateToLatest({ database, migrations });
    const db = database.kysely.withTables<Tables>();
    const failing = db.transaction().execute(async (trx) => {
      await trx.insertInto('items').values({ id: 10n, name: 'rolled-back', payload: new Uint8Array() }).execute();
      await new Promise((r) => setTimeout(r, 20));
      throw new Error('abort');
    });
    const committed = db.insertInto('items').values({ id: 11n, name: 'kept', payload: new Uint8Array() }).execute();
    await expect(failing).rejects.toThrow('abort');
    await committed;
    const names = await db.selectFrom('items').select('name').execute();
    expect(names.map((r) => r.name)).toEqual(['kept']);
  });

  it('reports pool connections (the embedded store has no pool)', async () => {
    const database = await open();
    await sql`select 1`.execute(database.kysely);
    const stats = database.poolStats();
    if (kind === 'embedded') expect(stats).toBeUndefined();
    else expect(stats).toMatchObject({ total: 1, idle: 1, waiting: 0 });
  });

  it('opens a session of its own outside the pool, whose end (a terminated backend) it reports (none embedded)', async () => {
    const database = await open();
    const session = await database.openSession();
    if (kind === 'embedded') {
      expect(session).toBeUndefined();
      return;
    }
    const [row] = await session!.query<{ pid: number; schema: string }>('SELECT pg_backend_pid() AS pid, current_schema() AS schema');
    expect(row!.schema).toBe(database.schema);
    // not a pool connection: the pool's statements run elsewhere
    const { rows } = await sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`.execute(database.kysely);
    expect(rows[0]!.pid).not.toBe(row!.pid);
    await sql`SELECT pg_terminate_backend(${row!.pid}::int)`.execute(database.kysely);
    expect(await session!.ended).toBeInstanceOf(Error);
    await expect(session!.query('SELECT 1')).rejects.toThrow();
    await session!.close();
  });

  it('delivers NOTIFY to listeners', async () => {
    const database = await open();
    const received: string[] = [];
    const unlisten = await database.listen('cos_test_channel', (payload) => received.push(payload));
    await sql`select pg_notify('cos_test_channel', 'hello')`.execute(database.kysely);
    await expect.poll(() => received, { timeout: 2000 }).toEqual(['hello']);
    await unlisten();
  });
});

describe('migrations on the real PostgreSQL', async () => {
  const kinds = await testStoreKinds();
  it.runIf(kinds.includes('postgres'))('are safe when several processes migrate at once', async () => {
    const schema = uniqueSchemaName();
    const databases = await Promise.all([1, 2, 3, 4].map(() => openTestDatabase('postgres', schema)));
    try {
      const results = await Promise.all(databases.map((database) => migrateToLatest({ database, migrations })));
      const applied = results.flatMap((r) => r.results ?? []).filter((r) => r.status === 'Success');
      expect(applied.map((r) => r.migrationName).sort()).toEqual(Object.keys(migrations).sort());
    } finally {
      for (const d of databases.slice(1)) await d.close();
      await databases[0]!.dispose();
    }
  });
});

describe('migrations among schemas that come and go (a test suite, other tenants)', async () => {
  const kinds = await testStoreKinds();
  it.runIf(kinds.includes('postgres'))('migrate every fresh schema while other schemas are created and dropped all the time', async () => {
    const churn = await openTestDatabase('postgres');
    let stop = false;
    // bounded: at most 2,000 schemas, and it stops with the test
    const churning = (async () => {
      for (let i = 0; !stop && i < 2000; i++) {
        const other = uniqueSchemaName('churn');
        await sql.raw(`CREATE SCHEMA ${other}; CREATE TABLE ${other}.t (id bigserial primary key)`).execute(churn.kysely);
        await sql.raw(`DROP SCHEMA ${other} CASCADE`).execute(churn.kysely);
      }
    })();
    try {
      for (let round = 0; round < 15; round++) {
        const database = await openTestDatabase('postgres');
        try {
          const result = await migrateToLatest({ database, migrations });
          expect(result.results?.filter((r) => r.status === 'Success')).toHaveLength(Object.keys(migrations).length);
        } finally {
          await database.dispose();
        }
      }
    } finally {
      stop = true;
      await churning;
      await churn.dispose();
    }
  });

  it.runIf(kinds.includes('postgres'))('name the migration that failed and why', async () => {
    const database = await openTestDatabase('postgres');
    try {
      const broken: MigrationSet = { '2026-01-02-001-broken': { up: (db: Kysely<unknown>) => sql`select * from no_such_table`.execute(db).then(() => {}) } };
      await expect(migrateToLatest({ database, migrations: broken })).rejects.toThrow(
        /schema migration 2026-01-02-001-broken failed in schema \w+: relation "no_such_table" does not exist \(42P01\)/,
      );
    } finally {
      await database.dispose();
    }
  });
});

describe('the embedded store', () => {
  it('creates a nested data directory that does not exist yet, and keeps its data there', async () => {
    const root = await mkdtemp(join(tmpdir(), 'cos-embedded-'));
    const dataDir = join(root, 'not', 'yet', 'there');
    try {
      const first = await createDatabase({ kind: 'embedded', dataDir, schema: 'cos' });
      await sql`create table kept (id int)`.execute(first.kysely);
      await sql`insert into kept values (7)`.execute(first.kysely);
      await first.close();
      const again = await createDatabase({ kind: 'embedded', dataDir, schema: 'cos' });
      const rows = await sql<{ id: number }>`select id from kept`.execute(again.kysely);
      expect(rows.rows).toEqual([{ id: 7 }]);
      await again.close();
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});

describe('mergeMigrations', () => {
  it('refuses a name defined twice', () => {
    expect(() => mergeMigrations(migrations, { '2026-01-01-001-items': migrations['2026-01-01-001-items']! })).toThrow(
      /defined twice/,
    );
  });
});

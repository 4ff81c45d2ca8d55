import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { mergeMigrations, migrateToLatest, type Database } from '@chiefofstate/postgres';
import { openTestDatabase, testStoreKinds, uniqueSchemaName } from '@chiefofstate/postgres/testing';
import { createSnapshotStore, snapshotMigrations } from '@chiefofstate/snapshot';
import { offsetStoreMigrations } from './migrations.js';
import { createOffsetStore } from './offset-store.js';

// The store packages' sets as the composition root merges them. The journal's set joins here
// once @chiefofstate/journal exports it; the names keep the packages apart (-100-, -200-, -300-).
const migrations = mergeMigrations(snapshotMigrations, offsetStoreMigrations);
const names = Object.keys(migrations).sort();

async function tablesOf(database: Database): Promise<string[]> {
  const { rows } = await sql<{ table_name: string }>`
    select table_name from information_schema.tables where table_schema = ${database.schema} order by 1`.execute(
    database.kysely,
  );
  return rows.map((r) => r.table_name);
}

const expectedTables = ['cos_migrations', 'cos_migrations_lock', 'cos_read_side_offsets', 'cos_snapshots'];

describe.each(await testStoreKinds())('merged store migrations on %s', (kind) => {
  it('run once, and a second run is a no-op', async () => {
    const database = await openTestDatabase(kind);
    try {
      const first = await migrateToLatest({ database, migrations });
      expect(first.results?.map((r) => [r.migrationName, r.status])).toEqual(names.map((n) => [n, 'Success']));
      const second = await migrateToLatest({ database, migrations });
      expect(second.results).toEqual([]);
      expect(await tablesOf(database)).toEqual(expectedTables);
    } finally {
      await database.dispose();
    }
  });
});

describe('merged store migrations on the real PostgreSQL', async () => {
  const kinds = await testStoreKinds();
  it.runIf(kinds.includes('postgres'))(
    'are applied exactly once when four processes migrate at once, twice over',
    async () => {
      const schema = uniqueSchemaName();
      // four Database instances on one schema: four processes' worth of pools
      const databases = await Promise.all([1, 2, 3, 4].map(() => openTestDatabase('postgres', schema)));
      try {
        const first = await Promise.all(databases.map((database) => migrateToLatest({ database, migrations })));
        const applied = first.flatMap((r) => r.results ?? []);
        expect(applied.every((r) => r.status === 'Success')).toBe(true);
        expect(applied.map((r) => r.migrationName).sort()).toEqual(names);

        const second = await Promise.all(databases.map((database) => migrateToLatest({ database, migrations })));
        expect(second.flatMap((r) => r.results ?? [])).toEqual([]);
        expect(await tablesOf(databases[0]!)).toEqual(expectedTables);

        // and the stores work across the instances on the migrated schema
        await createOffsetStore({ database: databases[1]! }).commit('rs', 0, 3n);
        expect((await createOffsetStore({ database: databases[2]! }).get('rs', 0)).position).toBe(3n);
        await createSnapshotStore({ database: databases[3]!, retain: 1 }).save({
          entityId: 'e',
          revision: 1n,
          payload: new Uint8Array([1]),
        });
        expect((await createSnapshotStore({ database: databases[0]!, retain: 1 }).loadLatest('e'))?.revision).toBe(1n);
      } finally {
        for (const d of databases.slice(1)) await d.close();
        await databases[0]!.dispose();
      }
    },
  );
});

import { sql } from 'kysely';
import { testStoreKinds, uniqueSchemaName, openTestDatabase, testPostgresConnection } from '@chiefofstate/postgres/testing';
import { describe, expect, it } from 'vitest';
import { cosMigrations, openCosStore } from './open-cos-store.js';

describe.each(await testStoreKinds())('openCosStore on %s', (kind) => {
  it('creates every COS table, and opening again is a no-op', async () => {
    const schema = uniqueSchemaName();
    const store = kind === 'postgres' ? testPostgresConnection(schema) : ({ kind: 'embedded', schema } as const);
    const first = await openCosStore({ store, applicationName: 'test' });
    try {
      const tables = await sql<{ table_name: string }>`
        select table_name from information_schema.tables where table_schema = ${schema} order by 1`.execute(first.kysely);
      const names = tables.rows.map((r) => r.table_name);
      for (const table of ['cos_journal', 'cos_snapshots', 'cos_read_side_offsets', 'cos_migrations']) expect(names).toContain(table);
      const applied = await sql<{ name: string }>`select name from cos_migrations order by name`.execute(first.kysely);
      expect(applied.rows.map((r) => r.name)).toEqual(Object.keys(cosMigrations).sort());
      if (kind === 'postgres') {
        const again = await openCosStore({ store, applicationName: 'test' });
        await again.close();
      }
    } finally {
      await first.close();
      if (kind === 'postgres') await (await openTestDatabase('postgres', schema)).dispose();
    }
  });
});

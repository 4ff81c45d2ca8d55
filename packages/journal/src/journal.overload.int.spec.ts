import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OverloadedError } from '@chiefofstate/core';
import { migrateToLatest } from '@chiefofstate/postgres';
import { openTestDatabase, testStoreKinds, type TestDatabase } from '@chiefofstate/postgres/testing';
import { createJournal } from './journal.js';
import { journalMigrations } from './schema.js';

const payload = new TextEncoder().encode('x');

describe.each(await testStoreKinds())('journal queue bound on %s', (kind) => {
  let database: TestDatabase;

  beforeAll(async () => {
    database = await openTestDatabase(kind);
    await migrateToLatest({ database, migrations: journalMigrations });
  });
  afterAll(async () => {
    await database?.dispose();
  });

  it('refuses appends beyond maxQueuedAppends at once with OverloadedError, writing none of them', async () => {
    const journal = createJournal({ database, numShards: 8, maxQueuedAppends: 3 });
    const ids = Array.from({ length: 10 }, (_, i) => `queue-${i}-${randomBytes(3).toString('hex')}`);
    // made in one turn: all wait for the first batch, which is taken in a later turn
    const outcomes = await Promise.allSettled(ids.map((entityId) => journal.append({ entityId, expectedRevision: 0n, events: [payload] })));
    expect(outcomes.map((o) => o.status)).toEqual([...Array<string>(3).fill('fulfilled'), ...Array<string>(7).fill('rejected')]);
    for (const outcome of outcomes.slice(3)) expect((outcome as PromiseRejectedResult).reason).toBeInstanceOf(OverloadedError);
    for (const [i, entityId] of ids.entries()) expect(await journal.readLatest(entityId)).toEqual(i < 3 ? expect.anything() : undefined);
    // the queue drained: appends are taken again
    await expect(journal.append({ entityId: ids[9]!, expectedRevision: 0n, events: [payload] })).resolves.toMatchObject({ lastRevision: 1n });
    await journal.close();
  });

  it('refuses a bound that is not a positive integer', () => {
    expect(() => createJournal({ database, numShards: 8, maxQueuedAppends: 0 })).toThrow(/maxQueuedAppends/);
  });
});

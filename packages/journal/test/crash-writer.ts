/**
 * Child process of journal.crash.int.spec.ts: appends under load to the journal in schema
 * $COS_TEST_SCHEMA (already migrated) and prints one line per append it has seen committed:
 * `<entity> <firstRevision> <lastRevision>`. It runs until it is killed.
 */
import { createDatabase } from '@chiefofstate/postgres';
import { testPostgresConnection } from '@chiefofstate/postgres/testing';
import { createJournal } from '../src/index.js';

const schema = process.env['COS_TEST_SCHEMA'];
if (!schema) throw new Error('COS_TEST_SCHEMA is required');
const writers = Number(process.env['COS_TEST_WRITERS'] ?? 64);

const database = await createDatabase(testPostgresConnection(schema));
const journal = createJournal({ database, numShards: 8, batchThreshold: 50 });
const encoder = new TextEncoder();

process.stdout.write('ready\n');
await Promise.all(
  Array.from({ length: writers }, async (_, w) => {
    const entityId = `crash-${w}`;
    let revision = 0n;
    for (let n = 0; ; n++) {
      const count = 1 + (n % 3);
      // each payload names its entity and revision, so the test can check what landed where
      const events = Array.from({ length: count }, (_, k) => encoder.encode(`${entityId}@${revision + 1n + BigInt(k)}`));
      const result = await journal.append({ entityId, expectedRevision: revision, events });
      revision = result.lastRevision;
      // pipes are written synchronously on Linux: once this returns, the parent will get the line
      process.stdout.write(`${entityId} ${result.firstRevision} ${result.lastRevision}\n`);
    }
  }),
);

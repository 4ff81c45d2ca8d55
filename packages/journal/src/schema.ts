import { sql, type Kysely } from 'kysely';
import type { MigrationSet } from '@chiefofstate/postgres';

/** The journal's table, as Kysely sees it (`database.kysely.withTables<JournalTables>()`). */
export type JournalTables = {
  cos_journal: {
    position: bigint;
    entity_id: string;
    revision: bigint;
    shard: number;
    written_at: Date;
    payload: Uint8Array;
    deleted: boolean;
  };
};

/** NOTIFY channel of every append transaction; the payload lists the shards it touched ("3,17"). */
export const JOURNAL_NOTIFY_CHANNEL = 'cos_journal';

/**
 * First key of the two-key advisory lock every append transaction takes before it allocates
 * positions ('cos1'). The second key is a hash of the schema, so journals in different schemas
 * of one database do not wait for each other.
 */
export const JOURNAL_LOCK_CLASS = 0x636f7331;

/**
 * The append, as one server-side function so a whole group commit is one statement (one round
 * trip, its own implicit transaction when called outside one):
 *
 * 1. take the journal's transaction-scoped advisory lock, so positions are allocated in commit
 *    order (see README: the gap problem);
 * 2. judge every request against its entity's latest revision, read AFTER the lock (PL/pgSQL
 *    takes a fresh snapshot per statement under READ COMMITTED), chaining requests of one
 *    entity in their batch order when the client says there are such (`p_prev`);
 * 3. allocate positions for the accepted events in one step (the lock makes this the only
 *    allocator), insert them in one statement, payloads cut out of one concatenated bytea;
 * 4. NOTIFY the shards touched.
 *
 * Returns which requests were accepted, the first position handed out (accepted events follow
 * in request order), and the write time.
 */
function appendFunctionSql(lockKey: number): string {
  return `
CREATE FUNCTION cos_journal_append(
  p_entity_ids text[],
  p_expected bigint[],
  p_counts integer[],
  p_shards integer[],
  p_starts integer[],
  p_prev integer[],
  p_offsets integer[],
  p_lengths integer[],
  p_payloads bytea,
  OUT ok boolean[],
  OUT first_position bigint,
  OUT written_at timestamptz
) LANGUAGE plpgsql AS $fn$
DECLARE
  v_latest bigint[];
  v_total bigint;
BEGIN
  PERFORM pg_advisory_xact_lock(${JOURNAL_LOCK_CLASS}, ${lockKey});
  written_at := now();
  IF p_prev IS NULL THEN
    -- every entity appears once: a request is accepted when it expects the latest revision
    SELECT array_agg(r.x = coalesce((SELECT max(j.revision) FROM cos_journal j WHERE j.entity_id = r.e), 0) ORDER BY r.i)
      INTO ok
      FROM unnest(p_entity_ids, p_expected) WITH ORDINALITY AS r(e, x, i);
  ELSE
    -- some entity appears more than once: walk the requests in order, each one judged against
    -- the revision its entity has after the earlier requests of the batch
    SELECT array_agg(coalesce((SELECT max(j.revision) FROM cos_journal j WHERE j.entity_id = r.e), 0) ORDER BY r.i)
      INTO v_latest
      FROM unnest(p_entity_ids) WITH ORDINALITY AS r(e, i);
    ok := array_fill(false, ARRAY[cardinality(p_entity_ids)]);
    FOR i IN 1 .. cardinality(p_entity_ids) LOOP
      IF p_prev[i] > 0 THEN
        v_latest[i] := v_latest[p_prev[i]];
      END IF;
      IF p_expected[i] = v_latest[i] THEN
        ok[i] := true;
        v_latest[i] := v_latest[i] + p_counts[i];
      END IF;
    END LOOP;
  END IF;

  SELECT sum(t.c) INTO v_total FROM unnest(p_counts, ok) AS t(c, o) WHERE t.o;
  IF v_total IS NULL THEN
    RETURN;
  END IF;
  first_position := nextval('cos_journal_position_seq');
  IF v_total > 1 THEN
    PERFORM setval('cos_journal_position_seq', first_position + v_total - 1);
  END IF;

  INSERT INTO cos_journal (position, entity_id, revision, shard, written_at, payload)
  SELECT first_position + r.before + g.j - 1, r.e, r.x + g.j, r.sh, written_at,
         substring(p_payloads FROM p_offsets[r.s + g.j] + 1 FOR p_lengths[r.s + g.j])
    FROM (SELECT t.e, t.x, t.c, t.sh, t.s, sum(t.c) OVER (ORDER BY t.i) - t.c AS before
            FROM unnest(p_entity_ids, p_expected, p_counts, p_shards, p_starts, ok)
                 WITH ORDINALITY AS t(e, x, c, sh, s, o, i)
           WHERE t.o) AS r
   CROSS JOIN LATERAL generate_series(1, r.c) AS g(j);

  PERFORM pg_notify('${JOURNAL_NOTIFY_CHANNEL}',
    (SELECT string_agg(DISTINCT t.sh::text, ',') FROM unnest(p_shards, ok) AS t(sh, o) WHERE t.o));
END
$fn$`;
}

/** Schema migrations of the journal; merge them with the other stores' and run at start-up. */
export const journalMigrations: MigrationSet = {
  '2026-11-26-100-journal-table': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('cos_journal')
        // BY DEFAULT, because the append function hands out positions itself (under the lock)
        .addColumn('position', 'bigint', (c) => c.generatedByDefaultAsIdentity().primaryKey())
        .addColumn('entity_id', 'text', (c) => c.notNull())
        .addColumn('revision', 'bigint', (c) => c.notNull().check(sql`revision >= 1`))
        .addColumn('shard', 'integer', (c) => c.notNull())
        .addColumn('written_at', 'timestamptz', (c) => c.notNull())
        .addColumn('payload', 'bytea', (c) => c.notNull())
        .addColumn('deleted', 'boolean', (c) => c.notNull().defaultTo(false))
        // the database itself refuses a second writer of a revision, from any process
        .addUniqueConstraint('cos_journal_entity_revision', ['entity_id', 'revision'])
        .execute();
      await db.schema.createIndex('cos_journal_shard_position').on('cos_journal').columns(['shard', 'position']).execute();
    },
  },
  '2026-11-26-101-journal-append-function': {
    async up(db: Kysely<unknown>) {
      // The lock's second key is fixed at migration time from the schema's name.
      const { rows } = await sql<{ key: number }>`SELECT hashtext(current_schema()) AS key`.execute(db);
      const key = rows[0]?.key;
      if (typeof key !== 'number' || !Number.isInteger(key)) throw new Error('could not derive the journal lock key');
      await sql.raw(appendFunctionSql(key)).execute(db);
    },
  },
};

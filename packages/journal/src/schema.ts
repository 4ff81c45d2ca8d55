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

/** The shard fences, as Kysely sees them. */
export type JournalFenceTables = {
  cos_journal_fences: {
    shard: number;
    epoch: bigint;
  };
};

/** The idempotency keys recorded with the appends, as Kysely sees them. */
export type IdempotencyKeyTables = {
  cos_idempotency_keys: {
    entity_id: string;
    key: string;
    /** SHA-256 of the command body the key came with */
    digest: Uint8Array;
    recorded_at: Date;
    /** the serialized reply (ProcessCommandResponse) when the command succeeded */
    reply: Uint8Array | null;
    /** the error's stable code when it failed */
    error_kind: string | null;
    /** the failure as google.rpc.Status bytes */
    error_status: Uint8Array | null;
  };
};

/** Bytes of the command digest at the start of each key's slice of the payload blob. */
export const KEY_DIGEST_BYTES = 32;

/** SQLSTATE cos_journal_append raises for an append whose lease epoch a fence refuses. */
export const FENCED_SQLSTATE = 'CF001';

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
 * 1. take the journal's transaction-scoped advisory lock, so positions are handed out in commit
 *    order (see README: the gap problem);
 * 2. take positions for all the batch's events at once (the lock makes this the only
 *    allocator): event k of the batch gets first_position + k, so a refused request leaves a
 *    hole, which readers do not mind;
 * 3. judge and insert in one statement, reading AFTER the lock (PL/pgSQL takes a fresh snapshot
 *    per statement under READ COMMITTED). A request expecting revision x is accepted when x is
 *    its entity's latest revision: (entity, x) exists, or x = 0, and (entity, x + 1) does not.
 *    By default only the first half is checked here and the unique constraint checks the
 *    second, since it probes that key while inserting anyway: a stale request then fails the
 *    statement (23505) and the caller runs the batch again with p_strict, which checks both
 *    halves so that only the accepted requests are inserted. Requests of one entity that
 *    appear more than once (`p_prev`) are judged first, in batch order, each against the
 *    revision the earlier ones leave;
 * 4. NOTIFY the shards written (`p_shard_list` when every request was accepted).
 *
 * With fencing (`p_fence_shards`, `p_fence_epochs`, a later version): before anything else,
 * refuse the whole call (FENCED_SQLSTATE) when a shard's lowest lease epoch among the batch's
 * requests (no epoch counts as 0) is below its fence in cos_journal_fences. One entry per shard,
 * not per request: a batch of 64 requests checks at most its shards.
 *
 * Returns `accepted`: NULL when every event was written, else the batch indexes (0-based) of
 * the events written; `first_position`; and the write time. `p_counts` and `p_starts` are NULL
 * when every request has one event (the common case, with a simpler insert). Statements are
 * planned once per session (force_generic_plan): their shape never depends on the values. The
 * lock, sequence and NOTIFY calls are plain assignments, which PL/pgSQL evaluates without
 * starting a query.
 */
function appendFunctionSql(lockKey: number, fencing = false, keys = false): string {
  // Without fencing, the text is exactly the one of the first version (its migration ran it);
  // without keys, the one of the second.
  const epochsParam = fencing ? '\n  p_fence_shards integer[],\n  p_fence_epochs bigint[],' : '';
  const keysParam = keys
    ? '\n  p_key_requests integer[],\n  p_keys text[],\n  p_key_kinds text[],\n  p_key_offsets integer[],\n  p_key_lengths integer[],'
    : '';
  const refusedOut = keys ? '\n  OUT refused integer[],' : '';
  const fenceCheck = fencing
    ? `
  IF p_fence_shards IS NOT NULL AND (SELECT true FROM unnest(p_fence_shards, p_fence_epochs) AS t(sh, ep)
                                       JOIN cos_journal_fences f ON f.shard = t.sh
                                      WHERE t.ep < f.epoch LIMIT 1) THEN
    RAISE EXCEPTION 'a later lease of the shard fenced this append' USING ERRCODE = '${FENCED_SQLSTATE}';
  END IF;`
    : '';
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
  p_strict boolean,
  p_shard_list text,${epochsParam}${keysParam}
  OUT accepted integer[],${refusedOut}
  OUT first_position bigint,
  OUT written_at timestamptz
) LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $fn$
DECLARE
  v_events integer := cardinality(p_lengths);
  v_written integer;
  v_ok boolean[];
  v_latest bigint[];
  v_void text;
BEGIN
  v_void := pg_advisory_xact_lock(${JOURNAL_LOCK_CLASS}, ${lockKey})::text;${fenceCheck}
  written_at := now();
  first_position := nextval('cos_journal_position_seq');
  IF v_events > 1 THEN
    v_void := setval('cos_journal_position_seq', first_position + v_events - 1)::text;
  END IF;

  IF p_prev IS NOT NULL THEN
    v_latest := ARRAY(SELECT coalesce((SELECT j.revision FROM cos_journal j WHERE j.entity_id = t.e
                                        ORDER BY j.revision DESC LIMIT 1), 0)
                        FROM unnest(p_entity_ids) AS t(e));
    v_ok := array_fill(false, ARRAY[cardinality(p_entity_ids)]);
    FOR i IN 1 .. cardinality(p_entity_ids) LOOP
      IF p_prev[i] > 0 THEN
        v_latest[i] := v_latest[p_prev[i]];
      END IF;
      IF p_expected[i] = v_latest[i] THEN
        v_ok[i] := true;
        v_latest[i] := v_latest[i] + coalesce(p_counts[i], 1);
      END IF;
    END LOOP;
  END IF;

  -- The judgement uses scalar subqueries, not EXISTS, which the planner may turn into a hashed
  -- scan of the whole table.
  IF p_counts IS NULL THEN
    INSERT INTO cos_journal (position, entity_id, revision, shard, written_at, payload)
    SELECT first_position + t.i - 1, t.e, t.x + 1, t.sh, written_at, substring(p_payloads FROM t.o + 1 FOR t.l)
      FROM unnest(p_entity_ids, p_expected, p_shards, p_offsets, p_lengths) WITH ORDINALITY AS t(e, x, sh, o, l, i)
     WHERE CASE WHEN v_ok IS NOT NULL THEN v_ok[t.i]
                ELSE (t.x = 0 OR coalesce((SELECT true FROM cos_journal j WHERE j.entity_id = t.e AND j.revision = t.x), false))
                     AND (NOT p_strict OR (SELECT true FROM cos_journal j WHERE j.entity_id = t.e AND j.revision = t.x + 1) IS NULL)
           END;
  ELSE
    INSERT INTO cos_journal (position, entity_id, revision, shard, written_at, payload)
    SELECT first_position + t.s + g.j - 1, t.e, t.x + g.j, t.sh, written_at,
           substring(p_payloads FROM p_offsets[t.s + g.j] + 1 FOR p_lengths[t.s + g.j])
      FROM unnest(p_entity_ids, p_expected, p_counts, p_shards, p_starts) WITH ORDINALITY AS t(e, x, c, sh, s, i)
     CROSS JOIN LATERAL generate_series(1, t.c) AS g(j)
     WHERE CASE WHEN v_ok IS NOT NULL THEN v_ok[t.i]
                ELSE (t.x = 0 OR coalesce((SELECT true FROM cos_journal j WHERE j.entity_id = t.e AND j.revision = t.x), false))
                     AND (NOT p_strict OR (SELECT true FROM cos_journal j WHERE j.entity_id = t.e AND j.revision = t.x + 1) IS NULL)
           END;
  END IF;
  GET DIAGNOSTICS v_written = ROW_COUNT;

  IF v_written < v_events THEN
    -- some requests were refused: say which events were written (rows of this transaction)
    accepted := coalesce(ARRAY(SELECT (j.position - first_position)::integer FROM cos_journal j
                                WHERE j.position BETWEEN first_position AND first_position + v_events - 1), '{}');
  END IF;

${keys ? keysSql() : ''}
  IF v_written = v_events${keys ? ' AND v_events > 0' : ''} THEN
    v_void := pg_notify('${JOURNAL_NOTIFY_CHANNEL}', p_shard_list)::text;
  ELSIF v_written > 0 THEN
    -- some requests were refused: name only the shards written
    v_void := pg_notify('${JOURNAL_NOTIFY_CHANNEL}', (
      SELECT string_agg(DISTINCT j.shard::text, ',') FROM cos_journal j
       WHERE j.position BETWEEN first_position AND first_position + v_events - 1))::text;
  END IF;
END
$fn$`;
}

/**
 * The idempotency keys of the batch (a later version of the append): each key row is written
 * with its request, in the same transaction, when the request was accepted. A request without
 * events (its commands persisted nothing: a no-op, a refusal) records only keys; it is judged
 * here, strictly (its expected revision must be its entity's latest), and `refused` lists the
 * batch indexes (0-based) of those refused. A key already present (expired, or recorded by an
 * attempt whose outcome was unknown to its writer) is overwritten: the entity runtime records a
 * key only after finding it absent or expired.
 *
 * `p_key_offsets`/`p_key_lengths` cut each key's slice out of `p_payloads`: the command digest
 * (KEY_DIGEST_BYTES), then the outcome, a reply when its `p_key_kinds` element is NULL, else
 * the error's status.
 */
function keysSql(): string {
  return `
  IF p_counts IS NOT NULL AND 0 = ANY(p_counts) THEN
    refused := ARRAY(SELECT (t.i - 1)::integer
                       FROM unnest(p_entity_ids, p_expected, p_counts) WITH ORDINALITY AS t(e, x, c, i)
                      WHERE t.c = 0 AND NOT CASE
                        WHEN v_ok IS NOT NULL THEN v_ok[t.i]
                        ELSE (t.x = 0 OR coalesce((SELECT true FROM cos_journal j WHERE j.entity_id = t.e AND j.revision = t.x), false))
                             AND (SELECT true FROM cos_journal j WHERE j.entity_id = t.e AND j.revision = t.x + 1) IS NULL
                      END);
    IF cardinality(refused) = 0 THEN
      refused := NULL;
    END IF;
  END IF;
  IF p_key_requests IS NOT NULL THEN
    INSERT INTO cos_idempotency_keys AS k (entity_id, key, digest, recorded_at, reply, error_kind, error_status)
    SELECT p_entity_ids[t.r], t.k, substring(p_payloads FROM t.o + 1 FOR ${KEY_DIGEST_BYTES}), written_at,
           CASE WHEN t.kind IS NULL THEN substring(p_payloads FROM t.o + ${KEY_DIGEST_BYTES + 1} FOR t.l - ${KEY_DIGEST_BYTES}) END,
           t.kind,
           CASE WHEN t.kind IS NOT NULL THEN substring(p_payloads FROM t.o + ${KEY_DIGEST_BYTES + 1} FOR t.l - ${KEY_DIGEST_BYTES}) END
      FROM unnest(p_key_requests, p_keys, p_key_kinds, p_key_offsets, p_key_lengths) AS t(r, k, kind, o, l)
     WHERE CASE WHEN coalesce(p_counts[t.r], 1) > 0
                THEN v_written = v_events
                     OR coalesce((SELECT true FROM cos_journal j
                                   WHERE j.position = first_position + coalesce(p_starts[t.r], t.r - 1)), false)
                ELSE refused IS NULL OR NOT (t.r - 1 = ANY(refused))
           END
    ON CONFLICT (entity_id, key) DO UPDATE
       SET digest = excluded.digest, recorded_at = excluded.recorded_at, reply = excluded.reply,
           error_kind = excluded.error_kind, error_status = excluded.error_status;
  END IF;`;
}

/**
 * Raises a shard's fence to `p_epoch` (never lowers it) under the appends' lock, so once it
 * commits every append that passed the check before has committed and every later one sees the
 * fence; returns the fence, above `p_epoch` when a later holder raised it already.
 */
function fenceFunctionSql(lockKey: number): string {
  return `
CREATE FUNCTION cos_journal_fence(p_shard integer, p_epoch bigint) RETURNS bigint LANGUAGE plpgsql AS $fn$
DECLARE
  v_void text;
  v_epoch bigint;
BEGIN
  v_void := pg_advisory_xact_lock(${JOURNAL_LOCK_CLASS}, ${lockKey})::text;
  INSERT INTO cos_journal_fences (shard, epoch) VALUES (p_shard, p_epoch)
  ON CONFLICT (shard) DO UPDATE SET epoch = greatest(cos_journal_fences.epoch, excluded.epoch)
  RETURNING epoch INTO v_epoch;
  RETURN v_epoch;
END
$fn$`;
}

/** The second key of the journal's lock, from the schema's name (fixed at migration time). */
async function journalLockKey(db: Kysely<unknown>): Promise<number> {
  const { rows } = await sql<{ key: number }>`SELECT hashtext(current_schema()) AS key`.execute(db);
  const key = rows[0]?.key;
  if (typeof key !== 'number' || !Number.isInteger(key)) throw new Error('could not derive the journal lock key');
  return key;
}

/** Schema migrations of the journal; merge them with the other stores' and run at start-up. */
export const journalMigrations: MigrationSet = {
  '2026-11-26-100-journal-table': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('cos_journal')
        // BY DEFAULT, because the append function hands out positions itself (under the lock)
        .addColumn('position', 'bigint', (c) => c.generatedByDefaultAsIdentity().primaryKey())
        .addColumn('entity_id', sql`text COLLATE "C"`, (c) => c.notNull())
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
      await sql.raw(appendFunctionSql(await journalLockKey(db))).execute(db);
    },
  },
  '2026-12-05-110-journal-shard-fences': {
    async up(db: Kysely<unknown>) {
      // The highest lease epoch of each entity shard: appends with a lower one come from a
      // replica another one took the shard over from, and are refused.
      await db.schema
        .createTable('cos_journal_fences')
        .addColumn('shard', 'integer', (c) => c.primaryKey())
        .addColumn('epoch', 'bigint', (c) => c.notNull())
        .execute();
      const key = await journalLockKey(db);
      // An overload with the fence arguments: the first version stays for processes of the previous
      // release during a rolling upgrade (their appends are not fenced).
      await sql.raw(appendFunctionSql(key, true)).execute(db);
      await sql.raw(fenceFunctionSql(key)).execute(db);
    },
  },
  '2026-12-12-120-idempotency-keys': {
    async up(db: Kysely<unknown>) {
      // x-cos-idempotency-key: each key of an entity with its command's digest and outcome,
      // written by the append that carried the command (see keysSql), removed after the
      // retention window by the background expiry (its scans use the recorded_at index).
      await db.schema
        .createTable('cos_idempotency_keys')
        .addColumn('entity_id', sql`text COLLATE "C"`, (c) => c.notNull())
        .addColumn('key', sql`text COLLATE "C"`, (c) => c.notNull())
        .addColumn('digest', 'bytea', (c) => c.notNull())
        .addColumn('recorded_at', 'timestamptz', (c) => c.notNull())
        .addColumn('reply', 'bytea')
        .addColumn('error_kind', 'text')
        .addColumn('error_status', 'bytea')
        .addPrimaryKeyConstraint('cos_idempotency_keys_pkey', ['entity_id', 'key'])
        .execute();
      await db.schema.createIndex('cos_idempotency_keys_recorded_at').on('cos_idempotency_keys').column('recorded_at').execute();
      // Another overload, with the keys: the earlier ones stay for processes of previous releases
      // during a rolling upgrade (they record no keys).
      await sql.raw(appendFunctionSql(await journalLockKey(db), true, true)).execute(db);
    },
  },
};

import { context, trace, type Context, type Link, type Span } from '@opentelemetry/api';
import { CompiledQuery, sql } from 'kysely';
import {
  CommitOutcomeUnknownError,
  FencedError,
  InternalError,
  InvalidArgumentError,
  JournalConflictError,
  OverloadedError,
  ShuttingDownError,
  StoreError,
  TRACER_NAME,
  assertValidEntityId,
  publicMessageOf,
  shardOf,
} from '@chiefofstate/core';
import { compiledWithDeadline, isOutcomeUnknown, isUniqueViolation, sqlState, withStatementDeadline, type Database } from '@chiefofstate/postgres';
import { FENCED_SQLSTATE, KEY_DIGEST_BYTES, type IdempotencyKeyTables, type JournalTables } from './schema.js';

export interface JournalOptions {
  readonly database: Database;
  /** shards of the cluster (COS num shards); an event's shard is shardOf(entityId, numShards) */
  readonly numShards: number;
  /** most events written by one group-commit transaction (COS_EVENTS_BATCH_THRESHOLD), default 100 */
  readonly batchThreshold?: number;
  /**
   * most appends waiting for their batch (COS_JOURNAL_MAX_QUEUED_APPENDS), default 8192; beyond,
   * append refuses at once with OverloadedError, so a slow database cannot grow the queue without end
   */
  readonly maxQueuedAppends?: number;
  /** told about each group-commit transaction once it is done (metrics) */
  readonly onBatch?: (batch: JournalBatchInfo) => void;
  /**
   * Appends are checked against their shard's fence (see `fenceShard`); an append without a
   * `fence` counts as epoch 0. For processes that split the shards through leases. Default false.
   */
  readonly fencing?: boolean;
  /**
   * How long an idempotency key stays (COS_IDEMPOTENCY_RETENTION), ms: reads of keys ignore
   * older ones (the background expiry, startKeyExpiry, removes them). Default 24 h
   */
  readonly idempotencyRetentionMs?: number;
}

/**
 * An idempotency key recorded by an append, in its transaction, when the append is accepted
 * (x-cos-idempotency-key): the command's digest and its outcome.
 */
export interface IdempotencyRecord {
  readonly key: string;
  /** SHA-256 of the command body (32 bytes) */
  readonly digest: Uint8Array;
  /** undefined: `outcome` is the reply; else the error's stable code, and `outcome` its status */
  readonly errorKind?: string | undefined;
  readonly outcome: Uint8Array;
}

/** A key as stored, without its outcome (what an entity keeps in memory). */
export interface StoredKeyDigest {
  readonly key: string;
  readonly digest: Uint8Array;
  readonly recordedAt: Date;
}

/** A key as stored, with its outcome. */
export interface StoredKey extends StoredKeyDigest, IdempotencyRecord {}

export interface JournalBatchInfo {
  /** events in the transaction, refused ones included */
  readonly events: number;
  /** append calls it carried */
  readonly appends: number;
  /** from sending the batch to its outcome */
  readonly seconds: number;
}

export interface AppendRequest {
  readonly entityId: string;
  /** the entity's latest persisted revision, 0n when it has none */
  readonly expectedRevision: bigint;
  /** serialized events; they get revisions expectedRevision + 1, + 2, ... */
  readonly events: readonly Uint8Array[];
  /**
   * The OpenTelemetry context the append's span is a child of, e.g. its command's. Default: the
   * active context (which needs a context manager). Not traced unless that span is recording.
   */
  readonly traceContext?: Context | undefined;
  /**
   * epoch ms after which the caller has no use for the outcome (its command's deadline). A
   * group commit waits for the database until the latest deadline of its members, capped by the
   * statement timeout. Default: the statement timeout
   */
  readonly deadline?: number | undefined;
  /**
   * With `fencing`: the appender's lease epoch of the entity's shard. The append fails with
   * FencedError, nothing written, when the shard's fence is higher (a later lease holder).
   */
  readonly fence?: bigint | undefined;
  /**
   * Idempotency keys to record with the events, in the same transaction, when the append is
   * accepted. An append may carry keys and no event (its commands persisted nothing): it is
   * then accepted only when expectedRevision is still the entity's latest revision.
   */
  readonly keys?: readonly IdempotencyRecord[] | undefined;
}

export interface AppendResult {
  readonly entityId: string;
  readonly firstRevision: bigint;
  readonly lastRevision: bigint;
  /** global positions of the events, in revision order */
  readonly positions: readonly bigint[];
  readonly writtenAt: Date;
}

export interface JournalEvent {
  readonly position: bigint;
  readonly entityId: string;
  readonly revision: bigint;
  readonly shard: number;
  readonly writtenAt: Date;
  readonly payload: Uint8Array;
}

/** Options of a read made on a caller's behalf. */
export interface ReadOptions {
  /**
   * epoch ms after which the caller has no use for the answer (its command's deadline): the
   * read waits for the database until then at most, besides the statement timeout
   */
  readonly deadline?: number | undefined;
}

export interface ReadEntityOptions extends ReadOptions {
  readonly fromRevision: bigint;
  readonly limit?: number;
  /** logically deleted events too (subscriptions replay every stored event); default false */
  readonly includeDeleted?: boolean;
}

export interface ReadAllOptions {
  readonly afterPosition: bigint;
  readonly limit: number;
}

export interface ReadShardOptions {
  readonly shard: number;
  readonly afterPosition: bigint;
  readonly limit: number;
}

export interface Journal {
  /**
   * Appends events of one entity atomically. Resolves only after COMMIT. Rejects with
   * JournalConflictError (nothing written) when expectedRevision is not the entity's latest
   * revision, InvalidArgumentError for a request PostgreSQL refuses (e.g. a NUL in the id),
   * StoreError when the database failed and nothing was written, CommitOutcomeUnknownError
   * when the append was sent and the connection was lost or timed out before its answer (the
   * events may or may not be persisted);
   * OverloadedError (nothing written) when maxQueuedAppends appends are already waiting.
   */
  append(request: AppendRequest): Promise<AppendResult>;
  /** The entity's newest event (deleted or not), undefined when it has none. */
  readLatest(entityId: string, options?: ReadOptions): Promise<JournalEvent | undefined>;
  /** The entity's events with revision >= fromRevision, ascending, without logically deleted ones. */
  readEntity(entityId: string, options: ReadEntityOptions): Promise<JournalEvent[]>;
  /**
   * Events of one shard with position > afterPosition, ascending; deleted ones included. Never
   * skips: an event that becomes visible later always has a higher position than every event
   * visible now.
   */
  readShard(options: ReadShardOptions): Promise<JournalEvent[]>;
  /**
   * Events of every shard with position > afterPosition, ascending; deleted ones included. Never
   * skips, like readShard: position order is commit order across the whole journal.
   */
  readAll(options: ReadAllOptions): Promise<JournalEvent[]>;
  /** Highest position written (in one shard, or overall), 0n when none. */
  latestPosition(shard?: number): Promise<bigint>;
  /** Marks the entity's events with revision < `revision` deleted; returns how many it marked. */
  deleteEventsBefore(entityId: string, revision: bigint): Promise<number>;
  /**
   * Raises the shard's fence to `epoch`, the caller's lease epoch: resolves once appends with a
   * lower epoch can no longer commit (those already committed are visible to reads made after).
   * FencedError when a later lease already raised it higher.
   */
  fenceShard(shard: number, epoch: bigint): Promise<void>;
  /**
   * The entity's idempotency keys recorded within the retention window, without outcomes, at
   * most `limit` (in no particular order): fewer than `limit` means all of them.
   */
  readKeys(entityId: string, limit: number, options?: ReadOptions): Promise<StoredKeyDigest[]>;
  /** readLatest and readKeys in one statement (one round trip): an entity's first keyed command needs both. */
  readLatestWithKeys(entityId: string, keyLimit: number, options?: ReadOptions): Promise<{ latest: JournalEvent | undefined; keys: StoredKeyDigest[] }>;
  /** Those of `keys` the entity has recorded within the retention window, with their outcomes. */
  findKeys(entityId: string, keys: readonly string[], options?: ReadOptions): Promise<StoredKey[]>;
  /** Writes what is queued, then refuses new appends (ShuttingDownError). Leaves the database open. */
  close(): Promise<void>;
}

interface Pending {
  readonly request: AppendRequest;
  readonly resolve: (result: AppendResult) => void;
  readonly reject: (error: unknown) => void;
  /** the span the append was made in (its traceContext's), when it is recorded */
  readonly span?: Span;
}

const tracer = trace.getTracer(TRACER_NAME);

/** The columns an event is read with (written_ms: see WRITTEN_MS). */
type EventRow = Pick<JournalTables['cos_journal'], 'position' | 'entity_id' | 'revision' | 'shard' | 'payload'> & { written_ms: number };

/**
 * written_at as whole milliseconds since the epoch (a float8 both drivers hand back as a number):
 * parsing timestamptz text into a Date took about a third of the client's CPU per event read,
 * and a Date keeps only milliseconds anyway (truncated, as the text parser does).
 */
const WRITTEN_MS = 'floor(extract(epoch from written_at) * 1000)::float8';

/** A row of readLatestWithKeys: an event ('e') or a key ('k'), the other's columns null. */
interface LatestOrKeyRow {
  kind: 'e' | 'k';
  position: bigint | null;
  entity_id: string | null;
  revision: bigint | null;
  shard: number | null;
  written_ms: number | null;
  payload: Uint8Array | null;
  key: string | null;
  digest: Uint8Array | null;
  recorded_at: Date | null;
}

interface AppendRow {
  /** batch indexes of the events written; null when all were */
  accepted: number[] | null;
  /** batch indexes of the requests without events (keys only) refused; null when none was */
  refused: number[] | null;
  first_position: bigint;
  written_at: Date;
}

/** Payload bytes one batch carries at most (a single larger request still goes, alone). */
const MAX_BATCH_BYTES = 8 * 1024 * 1024;

function payloadBytes(request: AppendRequest): number {
  let bytes = 0;
  for (const event of request.events) bytes += event.byteLength;
  if (request.keys) for (const key of request.keys) bytes += key.digest.byteLength + key.outcome.byteLength;
  return bytes;
}

const APPEND_SQL =
  'SELECT accepted, refused, first_position, written_at FROM cos_journal_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)';

const DEFAULT_KEY_RETENTION_MS = 24 * 60 * 60 * 1000;

/** Creates the journal over an already migrated database (see journalMigrations). */
export function createJournal(options: JournalOptions): Journal {
  const { database, numShards } = options;
  const batchThreshold = options.batchThreshold ?? 100;
  const maxQueued = options.maxQueuedAppends ?? 8192;
  if (!Number.isInteger(numShards) || numShards < 1) throw new InvalidArgumentError(`numShards must be a positive integer, got ${numShards}`);
  if (!Number.isInteger(batchThreshold) || batchThreshold < 1) {
    throw new InvalidArgumentError(`batchThreshold must be a positive integer, got ${batchThreshold}`);
  }
  const db = database.kysely.withTables<JournalTables>();
  if (!Number.isInteger(maxQueued) || maxQueued < 1) {
    throw new InvalidArgumentError(`maxQueuedAppends must be a positive integer, got ${maxQueued}`);
  }
  const retentionMs = options.idempotencyRetentionMs ?? DEFAULT_KEY_RETENTION_MS;
  if (!(retentionMs > 0)) throw new InvalidArgumentError(`idempotencyRetentionMs must be positive, got ${retentionMs}`);
  const keysDb = database.kysely.withTables<IdempotencyKeyTables>();
  /** keys recorded after this are within the retention window */
  const retainedSince = sql<Date>`now() - ${retentionMs} * interval '1 millisecond'`;
  const writer = createGroupCommitWriter(database, numShards, batchThreshold, maxQueued, options.onBatch, options.fencing ?? false);
  const append = (request: AppendRequest): Promise<AppendResult> =>
    // known down: fail now rather than queue behind a batch that waits for its timeout
    database.available()
      ? writer.append(request)
      : Promise.reject(new StoreError('journal: the database is unreachable, nothing was written'));

  const toEvent = (row: EventRow): JournalEvent => ({
    position: row.position,
    entityId: row.entity_id,
    revision: row.revision,
    shard: row.shard,
    writtenAt: new Date(row.written_ms),
    payload: row.payload,
  });
  const columns = ['position', 'entity_id', 'revision', 'shard', sql.raw<number>(WRITTEN_MS).as('written_ms'), 'payload'] as const;

  return {
    append,

    async readLatest(entityId, options) {
      const query = db.selectFrom('cos_journal').select(columns).where('entity_id', '=', entityId).orderBy('revision', 'desc').limit(1);
      const { rows } = await store(() => db.executeQuery(compiledWithDeadline(query, options?.deadline)));
      const row = rows[0];
      return row && toEvent(row);
    },

    async readEntity(entityId, { fromRevision, limit, includeDeleted = false, deadline }) {
      let query = db
        .selectFrom('cos_journal')
        .select(columns)
        .where('entity_id', '=', entityId)
        .where('revision', '>=', fromRevision)
        .orderBy('revision');
      if (!includeDeleted) query = query.where('deleted', '=', false);
      if (limit !== undefined) query = query.limit(limit);
      const { rows } = await store(() => db.executeQuery(compiledWithDeadline(query, deadline)));
      return rows.map((row) => toEvent(row));
    },

    async readShard({ shard, afterPosition, limit }) {
      const rows = await store(() =>
        db
          .selectFrom('cos_journal')
          .select(columns)
          .where('shard', '=', shard)
          .where('position', '>', afterPosition)
          .orderBy('position')
          .limit(limit)
          .execute(),
      );
      return rows.map((row) => toEvent(row));
    },

    async readAll({ afterPosition, limit }) {
      const rows = await store(() =>
        db.selectFrom('cos_journal').select(columns).where('position', '>', afterPosition).orderBy('position').limit(limit).execute(),
      );
      return rows.map((row) => toEvent(row));
    },

    async latestPosition(shard) {
      let query = db.selectFrom('cos_journal').select((eb) => eb.fn.max('position').as('max'));
      if (shard !== undefined) query = query.where('shard', '=', shard);
      const row = await store(() => query.executeTakeFirst());
      return row?.max ?? 0n;
    },

    async deleteEventsBefore(entityId, revision) {
      const result = await store(() =>
        db
          .updateTable('cos_journal')
          .set({ deleted: true })
          .where('entity_id', '=', entityId)
          .where('revision', '<', revision)
          .where('deleted', '=', false)
          .executeTakeFirst(),
      );
      return Number(result.numUpdatedRows);
    },

    async fenceShard(shard, epoch) {
      if (!Number.isInteger(shard) || shard < 0 || shard >= numShards) throw new InvalidArgumentError(`no shard ${shard}`);
      const result = await store(() =>
        database.kysely.executeQuery<{ fence: bigint | string }>(
          CompiledQuery.raw('SELECT cos_journal_fence($1, $2) AS fence', [shard, epoch.toString()]),
        ),
      );
      const fence = BigInt(result.rows[0]?.fence ?? 0);
      if (fence > epoch) throw new FencedError(`shard ${shard}: lease epoch ${epoch} was superseded by epoch ${fence}`);
    },

    // ---- idempotency keys ----
    async readKeys(entityId, limit, options) {
      const query = keysDb
        .selectFrom('cos_idempotency_keys')
        .select(['key', 'digest', 'recorded_at'])
        .where('entity_id', '=', entityId)
        .where('recorded_at', '>', retainedSince)
        .limit(limit);
      const { rows } = await store(() => keysDb.executeQuery(compiledWithDeadline(query, options?.deadline)));
      return rows.map((row) => ({ key: row.key, digest: row.digest, recordedAt: row.recorded_at }));
    },

    async readLatestWithKeys(entityId, keyLimit, options) {
      // one statement, rows of two shapes: the newest event ('e'), then the keys ('k')
      const query = sql<LatestOrKeyRow>`(SELECT 'e' AS kind, position, entity_id, revision, shard, ${sql.raw(WRITTEN_MS)} AS written_ms, payload,
          NULL::text AS key, NULL::bytea AS digest, NULL::timestamptz AS recorded_at
        FROM cos_journal WHERE entity_id = ${entityId} ORDER BY revision DESC LIMIT 1)
        UNION ALL
        (SELECT 'k', NULL::bigint, NULL::text, NULL::bigint, NULL::integer, NULL::float8, NULL::bytea, key, digest, recorded_at
        FROM cos_idempotency_keys
        WHERE entity_id = ${entityId} AND recorded_at > ${retainedSince} LIMIT ${keyLimit})`;
      const { rows } = await store(() => db.executeQuery(compiledWithDeadline({ compile: () => query.compile(db) }, options?.deadline)));
      let latest: JournalEvent | undefined;
      const keys: StoredKeyDigest[] = [];
      for (const row of rows) {
        if (row.kind === 'e') {
          latest = toEvent(row as EventRow);
        } else {
          keys.push({ key: row.key!, digest: row.digest!, recordedAt: row.recorded_at! });
        }
      }
      return { latest, keys };
    },

    async findKeys(entityId, keys, options) {
      if (keys.length === 0) return [];
      const query = keysDb
        .selectFrom('cos_idempotency_keys')
        .selectAll()
        .where('entity_id', '=', entityId)
        .where('key', 'in', keys)
        .where('recorded_at', '>', retainedSince);
      const { rows } = await store(() => keysDb.executeQuery(compiledWithDeadline(query, options?.deadline)));
      return rows.map((row) => ({
        key: row.key,
        digest: row.digest,
        recordedAt: row.recorded_at,
        ...(row.error_kind === null ? { outcome: row.reply ?? new Uint8Array() } : { errorKind: row.error_kind, outcome: row.error_status ?? new Uint8Array() }),
      }));
    },

    close: writer.close,
  };
}

async function store<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    throw new StoreError(`journal: ${errorMessage(error)}`, { cause: error });
  }
}

interface GroupCommitWriter {
  append(request: AppendRequest): Promise<AppendResult>;
  close(): Promise<void>;
}

/**
 * Group commit: appends queue while a batch is being written; the next batch takes whole
 * requests from the queue up to `batchThreshold` events (at least one request) and writes them
 * with one call of cos_journal_append, one statement in its own transaction. One batch is in
 * flight at a time, so requests of one entity are judged in the order they were made.
 */
function createGroupCommitWriter(
  database: Database,
  numShards: number,
  batchThreshold: number,
  maxQueued: number,
  onBatch: JournalOptions['onBatch'],
  fencing: boolean,
): GroupCommitWriter {
  let queue: Pending[] = [];
  let draining: Promise<void> | undefined;
  let closed = false;

  const drain = async (): Promise<void> => {
    try {
      // Appends made in the same turn as the first one join its batch.
      await Promise.resolve();
      for (;;) {
        if (queue.length === 0) {
          // Give callers whose appends just resolved one macrotask to queue their next ones,
          // so they join the next batch instead of trickling in one by one.
          await new Promise<void>((resolve) => setImmediate(resolve));
          if (queue.length === 0) return;
        }
        const batch = takeBatch();
        const started = performance.now();
        const span = batchSpan(batch);
        try {
          await writeBatch(batch);
        } catch (error) {
          // A bug, not a database answer: fail the batch rather than leave its callers waiting
          // (rejecting an already settled caller does nothing).
          for (const member of batch) member.reject(new InternalError('journal append failed', { cause: error }));
        }
        span?.end();
        let events = 0;
        for (const member of batch) events += member.request.events.length;
        onBatch?.({ events, appends: batch.length, seconds: (performance.now() - started) / 1000 });
      }
    } finally {
      draining = undefined;
    }
  };

  const takeBatch = (): Pending[] => {
    let events = queue[0]!.request.events.length;
    let bytes = payloadBytes(queue[0]!.request);
    let n = 1;
    while (n < queue.length) {
      const next = queue[n]!.request;
      const nextBytes = payloadBytes(next);
      if (events + next.events.length > batchThreshold || bytes + nextBytes > MAX_BATCH_BYTES) break;
      events += next.events.length;
      bytes += nextBytes;
      n++;
    }
    if (n === queue.length) {
      const batch = queue;
      queue = [];
      return batch;
    }
    return queue.splice(0, n);
  };

  const writeBatch = async (batch: readonly Pending[], strict = false): Promise<void> => {
    let row: AppendRow;
    try {
      row = await execute(batch, strict);
    } catch (error) {
      // A stale request met the unique constraint: judge every request fully and write the rest.
      if (!strict && isUniqueViolation(error)) return writeBatch(batch, true);
      if (batch.length > 1 && isStatementError(error)) {
        // Something in the batch was refused (a bad row, or a unique violation from a writer
        // that bypassed the lock): write the members one by one so only the guilty one fails.
        for (const member of batch) await writeBatch([member], strict);
        return;
      }
      for (const member of batch) member.reject(appendError(member.request, error));
      return;
    }
    settle(batch, row);
  };

  const execute = async (batch: readonly Pending[], strict: boolean): Promise<AppendRow> => {
    const n = batch.length;
    const entityIds = new Array<string>(n);
    const expected = new Array<bigint>(n);
    const counts = new Array<number>(n);
    const shards = new Array<number>(n);
    /** with fencing: each shard's lowest epoch in the batch (none counts as 0) */
    const fences = fencing ? new Map<number, bigint>() : undefined;
    const starts = new Array<number>(n);
    const shardSet = new Set<number>();
    let single = true; // every request has one event
    let prev: number[] | null = null;
    let seen: Map<string, number> | undefined;
    const offsets: number[] = [];
    const lengths: number[] = [];
    const payloads: Uint8Array[] = [];
    let offset = 0;
    let deadline = -Infinity;
    /** idempotency keys of the batch, when any: see keysSql in schema.ts */
    let keys: { requests: number[]; keys: string[]; kinds: (string | null)[]; offsets: number[]; lengths: number[] } | undefined;
    const keyBlobs: Uint8Array[] = [];
    for (let i = 0; i < n; i++) {
      const { entityId, expectedRevision, events, fence } = batch[i]!.request;
      deadline = Math.max(deadline, batch[i]!.request.deadline ?? Infinity);
      entityIds[i] = entityId;
      expected[i] = expectedRevision;
      counts[i] = events.length;
      if (events.length !== 1) single = false;
      const shard = shardOf(entityId, numShards);
      shards[i] = shard;
      if (fences) {
        const epoch = fence ?? 0n;
        const lowest = fences.get(shard);
        if (lowest === undefined || epoch < lowest) fences.set(shard, epoch);
      }
      starts[i] = lengths.length;
      for (const event of events) {
        offsets.push(offset);
        lengths.push(event.byteLength);
        payloads.push(event);
        offset += event.byteLength;
      }
      if (events.length > 0) shardSet.add(shard);
      if (n > 1) {
        seen ??= new Map();
        const earlier = seen.get(entityId);
        if (earlier !== undefined) {
          prev ??= new Array<number>(n).fill(0);
          prev[i] = earlier + 1; // 1-based, as SQL arrays
        }
        seen.set(entityId, i);
      }
    }
    // the keys' digests and outcomes follow the events in the blob
    for (let i = 0; i < n; i++) {
      const recorded = batch[i]!.request.keys;
      if (recorded === undefined || recorded.length === 0) continue;
      keys ??= { requests: [], keys: [], kinds: [], offsets: [], lengths: [] };
      for (const key of recorded) {
        keys.requests.push(i + 1);
        keys.keys.push(key.key);
        keys.kinds.push(key.errorKind ?? null);
        keys.offsets.push(offset);
        keys.lengths.push(KEY_DIGEST_BYTES + key.outcome.byteLength);
        keyBlobs.push(key.digest, key.outcome);
        offset += KEY_DIGEST_BYTES + key.outcome.byteLength;
      }
    }
    if (keyBlobs.length > 0) payloads.push(...keyBlobs);
    const blob = payloads.length === 1 ? payloads[0]! : Buffer.concat(payloads, offset);
    // Arrays go as PostgreSQL array literals built here: far cheaper than the driver's generic
    // per-element escaping, and the same text for pg and PGlite.
    // the database waits for the batch until the latest deadline of its members (capped by the statement timeout)
    const query = CompiledQuery.raw(withStatementDeadline(APPEND_SQL, deadline), [
      textArray(entityIds),
      numberArray(expected),
      single ? null : numberArray(counts),
      numberArray(shards),
      single ? null : numberArray(starts),
      prev && numberArray(prev),
      numberArray(offsets),
      numberArray(lengths),
      blob,
      strict,
      [...shardSet].join(','),
      fences ? numberArray([...fences.keys()]) : null,
      fences ? numberArray([...fences.values()]) : null,
      keys ? numberArray(keys.requests) : null,
      keys ? textArray(keys.keys) : null,
      keys ? textArray(keys.kinds) : null,
      keys ? numberArray(keys.offsets) : null,
      keys ? numberArray(keys.lengths) : null,
    ]);
    const result = await database.kysely.executeQuery<AppendRow>(query);
    const row = result.rows[0];
    if (!row) throw new Error('cos_journal_append returned no row');
    return row;
  };

  const settle = (batch: readonly Pending[], row: AppendRow): void => {
    // Event k of the batch (counting refused requests' events too) has position first + k.
    const first = BigInt(row.first_position);
    const writtenAt = row.written_at;
    let written: Set<number> | undefined;
    if (row.accepted !== null) written = new Set(row.accepted);
    const refused = row.refused === null ? undefined : new Set(row.refused);
    let start = 0;
    for (let i = 0; i < batch.length; i++) {
      const { request, resolve, reject } = batch[i]!;
      const count = request.events.length;
      if (count === 0 ? refused?.has(i) === true : written !== undefined && !written.has(start)) {
        reject(new JournalConflictError(request.entityId, request.expectedRevision));
      } else {
        const positions = new Array<bigint>(count);
        for (let k = 0; k < count; k++) positions[k] = first + BigInt(start + k);
        resolve({
          entityId: request.entityId,
          firstRevision: request.expectedRevision + 1n,
          lastRevision: request.expectedRevision + BigInt(count),
          positions,
          writtenAt,
        });
      }
      start += count;
    }
  };

  return {
    append(request) {
      if (closed) return Promise.reject(new ShuttingDownError('journal is closed'));
      if (queue.length >= maxQueued) {
        return Promise.reject(new OverloadedError(`journal overloaded: ${maxQueued} appends already queued`));
      }
      try {
        validate(request);
      } catch (error) {
        return Promise.reject(error);
      }
      const span = callerSpan(request);
      return new Promise<AppendResult>((resolve, reject) => {
        queue.push(span ? traced(request, resolve, reject, span) : { request, resolve, reject });
        draining ??= drain();
      });
    },
    async close() {
      closed = true;
      while (draining) await draining;
    },
  };
}

/**
 * The span the append was made in, when it is recorded. An append gets no span of its own: the
 * journal write is the batch's transaction, which has one (`cos.journal.batch`), and the caller's
 * span is linked to it and told its outcome. A span per append only measured the wait for the
 * batch, and cost a fifth of what tracing a command costs.
 */
function callerSpan(request: AppendRequest): Span | undefined {
  const span = trace.getSpan(request.traceContext ?? context.active());
  return span?.isRecording() ? span : undefined;
}

/** Tells the caller's span how the append went. */
function traced(
  request: AppendRequest,
  resolve: (result: AppendResult) => void,
  reject: (error: unknown) => void,
  span: Span,
): Pending {
  return {
    request,
    span,
    resolve(result) {
      span.setAttribute('cos.journal.first_position', Number(result.positions[0] ?? 0n));
      resolve(result);
    },
    reject(error) {
      // an event, not the span's status: the caller decides whether the append failing fails it
      // (a conflict is retried)
      // what a caller may be told: the driver's words and the stack stay in the log
      span.recordException({ name: error instanceof Error ? error.name : 'Error', message: publicMessageOf(error) });
      reject(error);
    },
  };
}

/**
 * The transaction's own span, the journal write: linked to the spans of the appends it carries
 * (each from its own trace), and each of those linked back to it, with its id as an attribute.
 */
function batchSpan(batch: readonly Pending[]): Span | undefined {
  const links: Link[] = [];
  let events = 0;
  for (const member of batch) {
    events += member.request.events.length;
    if (member.span) links.push({ context: member.span.spanContext() });
  }
  if (links.length === 0) return undefined;
  const span = tracer.startSpan('cos.journal.batch', {
    root: true,
    links,
    attributes: { 'cos.journal.batch_events': events, 'cos.journal.batch_appends': batch.length },
  });
  const batchId = span.spanContext().spanId;
  for (const member of batch) {
    if (member.span === undefined) continue;
    member.span.setAttribute('cos.journal.batch_span_id', batchId);
    member.span.addLink({ context: span.spanContext() });
  }
  return span;
}

function numberArray(values: readonly (number | bigint)[]): string {
  return `{${values.join(',')}}`;
}

const NEEDS_ESCAPE = /[\\"]/;
const ESCAPE = /[\\"]/g;

/** A text[] literal: every element double-quoted, backslashes and quotes escaped; null elements NULL. */
function textArray(values: readonly (string | null)[]): string {
  let literal = '{';
  for (let i = 0; i < values.length; i++) {
    const value = values[i] as string | null;
    if (i > 0) literal += ',';
    literal += value === null ? 'NULL' : `"${NEEDS_ESCAPE.test(value) ? value.replace(ESCAPE, '\\$&') : value}"`;
  }
  return `${literal}}`;
}

function validate(request: AppendRequest): void {
  assertValidEntityId(request.entityId);
  if (typeof request.expectedRevision !== 'bigint' || request.expectedRevision < 0n) {
    throw new InvalidArgumentError(`expectedRevision must be a bigint >= 0, got ${String(request.expectedRevision)}`);
  }
  if (request.events.length === 0 && (request.keys === undefined || request.keys.length === 0)) {
    throw new InvalidArgumentError('an append needs at least one event or idempotency key');
  }
  for (const key of request.keys ?? []) {
    if (key.digest.byteLength !== KEY_DIGEST_BYTES) {
      throw new InvalidArgumentError(`an idempotency key's digest must be ${KEY_DIGEST_BYTES} bytes, got ${key.digest.byteLength}`);
    }
  }
  if (request.fence !== undefined && (typeof request.fence !== 'bigint' || request.fence < 0n)) {
    throw new InvalidArgumentError(`fence must be a bigint >= 0, got ${String(request.fence)}`);
  }
}

/** An error the database raised for the statement (it has a SQLSTATE), not a lost connection. */
function isStatementError(error: unknown): boolean {
  const code = sqlState(error);
  return code !== undefined && !code.startsWith('08') && !code.startsWith('57') && !code.startsWith('53') && code !== '25006';
}

function appendError(request: AppendRequest, error: unknown): Error {
  // The lock makes this unreachable for writers that go through cos_journal_append; the unique
  // constraint still stops anyone else.
  if (isUniqueViolation(error)) return new JournalConflictError(request.entityId, request.expectedRevision, { cause: error });
  if (sqlState(error) === FENCED_SQLSTATE) {
    return new FencedError(`journal refused the append of ${JSON.stringify(request.entityId)}: a later lease of its shard fenced it`, {
      cause: error,
    });
  }
  // Class 22, data exception: PostgreSQL refused a value of this request (e.g. a NUL character).
  if (sqlState(error)?.startsWith('22')) {
    return new InvalidArgumentError(`journal refused the append of ${JSON.stringify(request.entityId)}: ${errorMessage(error)}`, {
      cause: error,
      publicMessage: `the store refused the events of ${JSON.stringify(request.entityId)} as invalid data; nothing was written`,
    });
  }
  if (isOutcomeUnknown(error)) {
    return new CommitOutcomeUnknownError(
      `the append of ${JSON.stringify(request.entityId)} was sent, then the database connection failed before its answer (${errorMessage(error)}): its events may or may not be persisted; read the entity's state before retrying`,
      { cause: error },
    );
  }
  return new StoreError(`journal append failed, nothing was written: ${errorMessage(error)}`, { cause: error });
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

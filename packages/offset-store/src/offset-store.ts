import { sql } from 'kysely';
import { InvalidArgumentError, StoreError } from '@chiefofstate/core';
import type { Database } from '@chiefofstate/postgres';
import type { OffsetStoreTables } from './tables.js';

export interface OffsetStoreOptions {
  /** the journal's database, or a separate one (COS_READ_SIDE_OFFSET_DB_*) */
  readonly database: Database;
}

/** Progress of one read side on one shard. */
export interface ShardOffset {
  readonly readSideId: string;
  readonly shard: number;
  /** journal position of the last processed event; 0n when nothing was processed */
  readonly position: bigint;
  readonly paused: boolean;
}

export interface OffsetStore {
  /**
   * Creates the rows of shards 0..numShards-1 that are missing, paused or not (a read side with
   * autoStart=false starts paused). Existing rows are never changed.
   */
  ensure(readSideId: string, numShards: number, options: { readonly paused: boolean }): Promise<void>;
  /** The shard's offset; a missing row reads as position 0n, not paused. */
  get(readSideId: string, shard: number): Promise<ShardOffset>;
  /** Every shard 0..numShards-1, in order (missing rows as in `get`). */
  list(readSideId: string, numShards: number): Promise<ShardOffset[]>;
  /**
   * Moves the shard's position to `position` if that is ahead of the stored one, atomically;
   * never backwards. Returns whether it advanced.
   */
  commit(readSideId: string, shard: number, position: bigint): Promise<boolean>;
  /**
   * Compare-and-set: sets the position to `position` only if the stored one is still
   * `expected` (a missing row counts as 0n). Returns whether it did. `position` must not be
   * below `expected`. `position === expected` succeeds without moving, which confirms the
   * stored value atomically.
   */
  commitIf(readSideId: string, shard: number, expected: bigint, position: bigint): Promise<boolean>;
  /** Restart: positions back to 0n, of all shards or of one. Pause flags are kept. */
  reset(readSideId: string, shard?: number): Promise<void>;
  /**
   * Pauses or resumes one shard, or all shards of the read side that have rows (call `ensure`
   * first, as start-up does). Stored, so it survives restarts.
   */
  setPaused(readSideId: string, paused: boolean, shard?: number): Promise<void>;
  /** Ids of the read sides that have rows, sorted. */
  knownReadSides(): Promise<string[]>;
}

const MAX_SHARD = 2 ** 31 - 1; // shard is an int4 column
const MAX_POSITION = 2n ** 63n - 1n; // position is an int8 column

/** Creates the offset store over tables created by `offsetStoreMigrations`. */
export function createOffsetStore(options: OffsetStoreOptions): OffsetStore {
  const db = options.database.kysely.withTables<OffsetStoreTables>();
  const now = sql<Date>`now()`;

  return {
    async ensure(readSideId, numShards, { paused }) {
      checkReadSideId(readSideId);
      checkNumShards(numShards);
      await guard(`creating the offsets of read side ${JSON.stringify(readSideId)}`, () =>
        sql`
          insert into cos_read_side_offsets (read_side_id, shard, paused)
          select ${readSideId}, shard, ${paused} from generate_series(0, ${numShards - 1}::int4) as shard
          on conflict (read_side_id, shard) do nothing`.execute(db),
      );
    },

    async get(readSideId, shard) {
      checkReadSideId(readSideId);
      checkShard(shard);
      const row = await guard(`reading the offset of ${describe(readSideId, shard)}`, () =>
        db
          .selectFrom('cos_read_side_offsets')
          .select(['position', 'paused'])
          .where('read_side_id', '=', readSideId)
          .where('shard', '=', shard)
          .executeTakeFirst(),
      );
      return { readSideId, shard, position: row?.position ?? 0n, paused: row?.paused ?? false };
    },

    async list(readSideId, numShards) {
      checkReadSideId(readSideId);
      checkNumShards(numShards);
      const rows = await guard(`reading the offsets of read side ${JSON.stringify(readSideId)}`, () =>
        db
          .selectFrom('cos_read_side_offsets')
          .select(['shard', 'position', 'paused'])
          .where('read_side_id', '=', readSideId)
          .where('shard', '<', numShards)
          .execute(),
      );
      const byShard = new Map(rows.map((row) => [row.shard, row]));
      return Array.from({ length: numShards }, (_, shard) => {
        const row = byShard.get(shard);
        return { readSideId, shard, position: row?.position ?? 0n, paused: row?.paused ?? false };
      });
    },

    async commit(readSideId, shard, position) {
      checkReadSideId(readSideId);
      checkShard(shard);
      checkPosition(position);
      // Every stored position is >= 0n, so 0n can never advance (and needs no row).
      if (position === 0n) return false;
      // One statement: ON CONFLICT DO UPDATE locks the row and evaluates the WHERE against its
      // latest version, so concurrent committers end at the maximum, whatever the interleaving.
      const result = await guard(`committing the offset of ${describe(readSideId, shard)}`, () =>
        db
          .insertInto('cos_read_side_offsets')
          .values({ read_side_id: readSideId, shard, position })
          .onConflict((oc) =>
            oc
              .columns(['read_side_id', 'shard'])
              .doUpdateSet({ position, updated_at: now })
              .where('cos_read_side_offsets.position', '<', position),
          )
          .executeTakeFirst(),
      );
      return (result.numInsertedOrUpdatedRows ?? 0n) > 0n;
    },

    async commitIf(readSideId, shard, expected, position) {
      checkReadSideId(readSideId);
      checkShard(shard);
      checkPosition(expected);
      checkPosition(position);
      if (position < expected) {
        throw new InvalidArgumentError(`offsets never move backwards: ${expected} -> ${position}`);
      }
      const what = `committing the offset of ${describe(readSideId, shard)} from ${expected}`;
      if (expected === 0n) {
        // A missing row reads as 0n, so it matches: create it, or update a row still at 0n.
        const result = await guard(what, () =>
          db
            .insertInto('cos_read_side_offsets')
            .values({ read_side_id: readSideId, shard, position })
            .onConflict((oc) =>
              oc
                .columns(['read_side_id', 'shard'])
                .doUpdateSet({ position, updated_at: now })
                .where('cos_read_side_offsets.position', '=', 0n),
            )
            .executeTakeFirst(),
        );
        return (result.numInsertedOrUpdatedRows ?? 0n) > 0n;
      }
      const result = await guard(what, () =>
        db
          .updateTable('cos_read_side_offsets')
          .set({ position, updated_at: now })
          .where('read_side_id', '=', readSideId)
          .where('shard', '=', shard)
          .where('position', '=', expected)
          .executeTakeFirst(),
      );
      return result.numUpdatedRows > 0n;
    },

    async reset(readSideId, shard) {
      checkReadSideId(readSideId);
      if (shard !== undefined) checkShard(shard);
      // Missing rows already read as 0n, so only existing rows need updating.
      await guard(`resetting the offsets of ${describe(readSideId, shard)}`, () => {
        let query = db
          .updateTable('cos_read_side_offsets')
          .set({ position: 0n, updated_at: now })
          .where('read_side_id', '=', readSideId);
        if (shard !== undefined) query = query.where('shard', '=', shard);
        return query.execute();
      });
    },

    async setPaused(readSideId, paused, shard) {
      checkReadSideId(readSideId);
      const what = `${paused ? 'pausing' : 'resuming'} ${describe(readSideId, shard)}`;
      if (shard === undefined) {
        await guard(what, () =>
          db
            .updateTable('cos_read_side_offsets')
            .set({ paused, updated_at: now })
            .where('read_side_id', '=', readSideId)
            .execute(),
        );
        return;
      }
      checkShard(shard);
      // One shard: create its row if missing, so the flag is stored even before any commit.
      await guard(what, () =>
        db
          .insertInto('cos_read_side_offsets')
          .values({ read_side_id: readSideId, shard, paused })
          .onConflict((oc) => oc.columns(['read_side_id', 'shard']).doUpdateSet({ paused, updated_at: now }))
          .execute(),
      );
    },

    async knownReadSides() {
      const rows = await guard('listing the read sides', () =>
        db.selectFrom('cos_read_side_offsets').select('read_side_id').distinct().orderBy('read_side_id').execute(),
      );
      return rows.map((row) => row.read_side_id);
    },
  };
}

function describe(readSideId: string, shard: number | undefined): string {
  return `read side ${JSON.stringify(readSideId)}${shard === undefined ? '' : ` shard ${shard}`}`;
}

function checkReadSideId(readSideId: string): void {
  if (typeof readSideId !== 'string' || readSideId.length === 0) {
    throw new InvalidArgumentError('read side id must be a non-empty string');
  }
}

function checkShard(shard: number): void {
  if (!Number.isInteger(shard) || shard < 0 || shard > MAX_SHARD) {
    throw new InvalidArgumentError(`shard must be an integer in 0..${MAX_SHARD}, got ${shard}`);
  }
}

function checkNumShards(numShards: number): void {
  if (!Number.isInteger(numShards) || numShards < 1 || numShards > MAX_SHARD) {
    throw new InvalidArgumentError(`number of shards must be a positive integer, got ${numShards}`);
  }
}

function checkPosition(position: bigint): void {
  if (typeof position !== 'bigint' || position < 0n || position > MAX_POSITION) {
    throw new InvalidArgumentError(`journal position must be a bigint in 0..${MAX_POSITION}, got ${String(position)}`);
  }
}

/** Reports database failures as StoreError, so the edge maps them in one place. */
async function guard<T>(what: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    throw new StoreError(`${what} failed: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
}

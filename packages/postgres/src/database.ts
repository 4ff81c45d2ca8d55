import { mkdir } from 'node:fs/promises';
import { PGlite, types as pgliteTypes } from '@electric-sql/pglite';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { PGliteDialect } from './pglite-dialect.js';

/** Connection settings for a PostgreSQL server. */
export interface PostgresConnectionOptions {
  readonly kind: 'postgres';
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  readonly database: string;
  /** schema holding COS's tables; created when missing */
  readonly schema: string;
  /** connections in the pool (COS_DB_POOL_MAX_SIZE) */
  readonly poolMax?: number;
  /** application_name reported to PostgreSQL */
  readonly applicationName?: string;
}

/** An embedded PostgreSQL (PGlite) stored under `dataDir`, or in memory when `dataDir` is omitted. */
export interface EmbeddedConnectionOptions {
  readonly kind: 'embedded';
  readonly dataDir?: string;
  readonly schema: string;
}

export type DatabaseOptions = PostgresConnectionOptions | EmbeddedConnectionOptions;

/** Called with the payload of each NOTIFY on a channel. */
export type NotificationListener = (payload: string) => void;

/**
 * One store database: a Kysely instance whose connections use `schema`, plus LISTEN support.
 * Revisions and positions (int8) come back as bigint from both backends.
 */
export interface Database {
  readonly kind: DatabaseOptions['kind'];
  readonly schema: string;
  /** Table types are declared by each store package: `database.kysely.withTables<MyTables>()`. */
  readonly kysely: Kysely<object>;
  /** Subscribes to NOTIFY on `channel`; resolves once listening. Returns the unsubscribe function. */
  listen(channel: string, listener: NotificationListener): Promise<() => Promise<void>>;
  /** Connections of the pg pool; undefined for the embedded store, which has one. */
  poolStats(): PoolStats | undefined;
  /** Closes the pool (or the embedded database). */
  close(): Promise<void>;
}

export interface PoolStats {
  readonly total: number;
  readonly idle: number;
  /** callers waiting for a connection */
  readonly waiting: number;
}

const INT8_OID = 20;
const SCHEMA_NAME = /^[A-Za-z_][A-Za-z0-9_$]{0,62}$/;

function assertSchemaName(schema: string): void {
  // The schema name goes into SET search_path / CREATE SCHEMA, so only plain identifiers pass.
  if (!SCHEMA_NAME.test(schema)) throw new Error(`invalid schema name ${JSON.stringify(schema)}`);
}

/** Opens the store database and makes sure its schema exists. */
export async function createDatabase(options: DatabaseOptions): Promise<Database> {
  assertSchemaName(options.schema);
  return options.kind === 'postgres' ? createPostgresDatabase(options) : createEmbeddedDatabase(options);
}

async function createPostgresDatabase(options: PostgresConnectionOptions): Promise<Database> {
  const connection = {
    host: options.host,
    port: options.port,
    user: options.user,
    password: options.password,
    database: options.database,
    application_name: options.applicationName ?? 'chiefofstate',
  };
  // Per-pool type parsers, so this library never changes pg's process-wide defaults.
  const typeParsers = {
    getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
      oid === INT8_OID && format !== 'binary'
        ? (value: string) => BigInt(value)
        : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
  };
  await ensureSchema(connection, options.schema);
  const pool = new pg.Pool({
    ...connection,
    max: options.poolMax ?? 5,
    types: typeParsers,
    // Every connection resolves unqualified names in the COS schema first.
    options: `-c search_path=${options.schema}`,
  });
  // An idle client's error (server restart) must not crash the process; the pool replaces it.
  pool.on('error', () => {});
  const kysely = new Kysely<object>({ dialect: new PostgresDialect({ pool }) });

  const listeners = new Map<string, Set<NotificationListener>>();
  let listenClient: pg.Client | undefined;
  let listenClientReady: Promise<pg.Client> | undefined;
  const getListenClient = (): Promise<pg.Client> => {
    listenClientReady ??= (async () => {
      const client = new pg.Client({ ...connection, types: typeParsers });
      client.on('notification', (message) => {
        for (const listener of listeners.get(message.channel) ?? []) listener(message.payload ?? '');
      });
      client.on('error', () => {
        // Dropped LISTEN connection: forget it; the next listen() reconnects, and read sides
        // poll as a fallback, so a missed notification only delays delivery.
        listenClient = undefined;
        listenClientReady = undefined;
      });
      await client.connect();
      listenClient = client;
      return client;
    })();
    return listenClientReady;
  };

  return {
    kind: 'postgres',
    schema: options.schema,
    kysely,
    poolStats: () => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount }),
    async listen(channel, listener) {
      const client = await getListenClient();
      let set = listeners.get(channel);
      if (!set) {
        set = new Set();
        listeners.set(channel, set);
        await client.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
      }
      set.add(listener);
      return async () => {
        set.delete(listener);
        if (set.size === 0 && listeners.get(channel) === set) {
          listeners.delete(channel);
          await listenClient?.query(`UNLISTEN ${pg.escapeIdentifier(channel)}`).catch(() => {});
        }
      };
    },
    async close() {
      const client = listenClient;
      listenClient = undefined;
      listenClientReady = undefined;
      await client?.end().catch(() => {});
      await kysely.destroy();
    },
  };
}

async function ensureSchema(connection: pg.ClientConfig, schema: string): Promise<void> {
  const client = new pg.Client(connection);
  await client.connect();
  try {
    // Several processes may start at once: serialise CREATE SCHEMA, whose IF NOT EXISTS still
    // races on the catalog's unique index.
    await client.query('BEGIN');
    await client.query(`SELECT pg_advisory_xact_lock(hashtext('chiefofstate:schema:' || $1))`, [schema]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${pg.escapeIdentifier(schema)}`);
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    await client.end().catch(() => {});
  }
}

async function createEmbeddedDatabase(options: EmbeddedConnectionOptions): Promise<Database> {
  // PGlite creates only the last level of its directory; a first start with a nested path (the
  // quickstart's read side, or COS_DATA_DIR=./data/cos) needs the parents too.
  if (options.dataDir !== undefined) await mkdir(options.dataDir, { recursive: true });
  const pglite = await PGlite.create({
    ...(options.dataDir !== undefined ? { dataDir: options.dataDir } : {}),
    parsers: { [pgliteTypes.INT8]: (value: string) => BigInt(value) },
  });
  await pglite.exec(`CREATE SCHEMA IF NOT EXISTS "${options.schema}"; SET search_path TO "${options.schema}";`);
  const kysely = new Kysely<object>({ dialect: new PGliteDialect(pglite) });
  return {
    kind: 'embedded',
    schema: options.schema,
    kysely,
    poolStats: () => undefined,
    async listen(channel, listener) {
      return pglite.listen(channel, listener);
    },
    async close() {
      await kysely.destroy();
      await pglite.close();
    },
  };
}

/** SQLSTATE 23505: a unique constraint refused the row (the same code on pg and PGlite). */
export function isUniqueViolation(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === '23505';
}

/** Sends NOTIFY on `channel` (used by writers to wake read sides). */
export async function notify(kysely: Kysely<object>, channel: string, payload = ''): Promise<void> {
  await sql`SELECT pg_notify(${channel}, ${payload})`.execute(kysely);
}

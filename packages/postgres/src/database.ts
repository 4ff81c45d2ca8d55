import { mkdir } from 'node:fs/promises';
import { PGlite, types as pgliteTypes } from '@electric-sql/pglite';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { createGuardedPool, destroySocket, withinClientTimeout } from './guarded-pool.js';
import { createListenConnection, type NotificationListener } from './listen-connection.js';
import { PGliteDialect } from './pglite-dialect.js';
import { createPostgresTls, explainTlsFailure, type PostgresTlsOptions } from './postgres-tls.js';
import { statementDeadlineOf } from './statement-deadline.js';
import { createStoreAvailability } from './store-availability.js';

export type { NotificationListener } from './listen-connection.js';

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
  /** longest wait for a connection, a new one or one of the pool (COS_DB_CONNECT_TIMEOUT). Default 5000 */
  readonly connectTimeoutMs?: number;
  /**
   * the server's statement_timeout, and (with a short grace, so the server answers first when
   * it can) the client-side bound of every statement, which also holds when the server does not
   * answer at all (COS_DB_STATEMENT_TIMEOUT). Default 5000
   */
  readonly statementTimeoutMs?: number;
  /** the server's idle_in_transaction_session_timeout (COS_DB_IDLE_IN_TRANSACTION_TIMEOUT). Default 10000 */
  readonly idleInTransactionTimeoutMs?: number;
  /** most callers waiting for a pool connection; beyond, StoreError at once (COS_DB_POOL_MAX_WAITING). Default 1000 */
  readonly poolMaxWaiting?: number;
  /** TLS (COS_POSTGRES_SSL_*), libpq's sslmode meanings; default disable. Files are re-read for new connections */
  readonly tls?: PostgresTlsOptions;
  /** told when the store goes down or comes back, when the LISTEN connection drops or listens again, when TLS files are reloaded (logs) */
  readonly onStatus?: (status: DatabaseStatus) => void;
}

/** A change the database reports for operators. */
export interface DatabaseStatus {
  /** `tls`: rotated TLS files were taken (up) or refused, the previous ones kept (down) */
  readonly what: 'store' | 'listen' | 'tls';
  readonly up: boolean;
  /** why it went down */
  readonly error?: unknown;
}

/** An embedded PostgreSQL (PGlite) stored under `dataDir`, or in memory when `dataDir` is omitted. */
export interface EmbeddedConnectionOptions {
  readonly kind: 'embedded';
  readonly dataDir?: string;
  readonly schema: string;
}

export type DatabaseOptions = PostgresConnectionOptions | EmbeddedConnectionOptions;

/**
 * One store database: a Kysely instance whose connections use `schema`, plus LISTEN support.
 * Revisions and positions (int8) come back as bigint from both backends.
 *
 * On PostgreSQL a statement that fails because the connection was lost or timed out on the
 * client side rejects with an error `isOutcomeUnknown` recognises (it was sent, so it may have
 * run); failures before sending reject with StoreError (@chiefofstate/core).
 */
export interface Database {
  readonly kind: DatabaseOptions['kind'];
  readonly schema: string;
  /** Table types are declared by each store package: `database.kysely.withTables<MyTables>()`. */
  readonly kysely: Kysely<object>;
  /** Subscribes to NOTIFY on `channel`; resolves once listening. Returns the unsubscribe function. */
  listen(channel: string, listener: NotificationListener): Promise<() => Promise<void>>;
  /** false while the store is known to be unreachable (or a read-only replica); always true embedded */
  available(): boolean;
  /** Connections of the pg pool; undefined for the embedded store, which has one. */
  poolStats(): PoolStats | undefined;
  /**
   * A connection of its own, outside the pool, kept until closed or lost: for session state such
   * as advisory locks. Undefined on the embedded store (one process, one session for everything).
   */
  openSession(): Promise<DatabaseSession | undefined>;
  /** Closes the pool (or the embedded database). */
  close(): Promise<void>;
}

/** One connection kept open (see Database.openSession); lost for good once it fails. */
export interface DatabaseSession {
  /** Runs a statement on this connection; bounded like the pool's. A failure ends the session. */
  query<R>(text: string, values?: readonly unknown[]): Promise<R[]>;
  /** Resolves once the connection is gone (closed, or lost: the reason), its session state with it. */
  readonly ended: Promise<unknown>;
  close(): Promise<void>;
}

export interface PoolStats {
  readonly total: number;
  readonly idle: number;
  /** callers waiting for a connection */
  readonly waiting: number;
  /** whether the store answers (see Database.available) */
  readonly available: boolean;
  /** connections lost, statements timed out on the client side, connects failed, since start */
  readonly connectionFailures: number;
}

const INT8_OID = 20;
const SCHEMA_NAME = /^[A-Za-z_][A-Za-z0-9_$]{0,62}$/;
/** how much longer the client waits than the server's statement_timeout, so the server answers first when it can */
const CLIENT_GRACE_MS = 500;
/**
 * Longest a probe of the store may take (also bounded by the connect timeout): a fresh
 * connection and SELECT answer in milliseconds on a live server, so this finds a stalled one fast.
 */
const PROBE_TIMEOUT_MS = 2000;

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
  const connectTimeoutMs = options.connectTimeoutMs ?? 5000;
  const statementTimeoutMs = options.statementTimeoutMs ?? 5000;
  const tls = createPostgresTls(options.tls, {
    onReload: () => options.onStatus?.({ what: 'tls', up: true }),
    onReloadError: (error) => options.onStatus?.({ what: 'tls', up: false, error }),
  });
  const base: pg.ClientConfig = {
    host: options.host,
    port: options.port,
    user: options.user,
    password: options.password,
    database: options.database,
    application_name: options.applicationName ?? 'chiefofstate',
    connectionTimeoutMillis: connectTimeoutMs,
    // finds a peer gone while the connection is idle (the statement bound covers a busy one)
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    statement_timeout: statementTimeoutMs,
    idle_in_transaction_session_timeout: options.idleInTransactionTimeoutMs ?? 10_000,
  };
  // Every connection (pool, LISTEN, probe, schema) takes the TLS files' latest contents when it
  // is made; `ssl` is always explicit, so pg never falls back to reading PGSSLMODE.
  const connection = (): pg.ClientConfig => ({ ...base, ssl: tls.connectionOptions() });
  // Per-pool type parsers, so this library never changes pg's process-wide defaults.
  const typeParsers = {
    getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
      oid === INT8_OID && format !== 'binary'
        ? (value: string) => BigInt(value)
        : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
  };
  try {
    await ensureSchema(connection(), options.schema, statementTimeoutMs + CLIENT_GRACE_MS);
  } catch (error) {
    tls.close();
    throw explainTlsFailure(error, tls.mode);
  }
  // pg-pool builds each client from the options it copied once; this class adds the TLS
  // settings of the moment instead.
  class PooledClient extends pg.Client {
    constructor(config?: pg.ClientConfig) {
      super({ ...config, ssl: tls.connectionOptions() });
    }
  }
  const pool = new pg.Pool({
    ...base,
    Client: PooledClient,
    max: options.poolMax ?? 5,
    types: typeParsers,
    // Every connection resolves unqualified names in the COS schema first.
    options: `-c search_path=${options.schema}`,
  });
  const availability = createStoreAvailability({
    probe: () => probe(connection(), Math.min(connectTimeoutMs, PROBE_TIMEOUT_MS)),
    onChange: (up, error) => options.onStatus?.({ what: 'store', up, ...(error !== undefined ? { error } : {}) }),
  });
  const guarded = createGuardedPool({
    pool,
    availability,
    queryTimeoutMs: statementTimeoutMs + CLIENT_GRACE_MS,
    timeoutMs: (defaultMs, sql) => {
      const deadline = statementDeadlineOf(sql);
      // up to the caller's deadline, no grace: past it nobody waits for the answer any more
      return deadline === undefined ? defaultMs : Math.min(defaultMs, Math.max(0, deadline - Date.now()));
    },
    maxWaiting: options.poolMaxWaiting ?? 1000,
  });
  const kysely = new Kysely<object>({ dialect: new PostgresDialect({ pool: guarded }) });
  const notifications = createListenConnection({
    newClient: () => new pg.Client({ ...connection(), types: typeParsers }),
    onStatus: (up, error) => options.onStatus?.({ what: 'listen', up, ...(error !== undefined ? { error } : {}) }),
  });

  return {
    kind: 'postgres',
    schema: options.schema,
    kysely,
    listen: (channel, listener) => notifications.listen(channel, listener),
    available: () => availability.available(),
    openSession: () => openSession({ ...connection(), types: typeParsers, options: `-c search_path=${options.schema}` }, statementTimeoutMs + CLIENT_GRACE_MS),
    poolStats: () => ({
      total: pool.totalCount,
      idle: pool.idleCount,
      waiting: pool.waitingCount,
      available: availability.available(),
      connectionFailures: availability.failures(),
    }),
    async close() {
      availability.close();
      tls.close();
      await notifications.close();
      await kysely.destroy();
    },
  };
}

async function openSession(connection: pg.ClientConfig, timeoutMs: number): Promise<DatabaseSession> {
  const client = new pg.Client(connection);
  let end!: (reason: unknown) => void;
  const ended = new Promise<unknown>((resolve) => (end = resolve));
  // Closes the socket at once: a stalled server would never answer the polite goodbye, and the
  // server must see the session end (its locks released) as soon as this process gives it up.
  const destroy = (reason: unknown) => {
    end(reason);
    destroySocket(client);
    client.end().catch(() => {});
  };
  client.on('error', destroy);
  client.on('end', () => end(new Error('the session connection ended')));
  try {
    await client.connect();
  } catch (error) {
    destroy(error);
    throw error;
  }
  return {
    ended,
    async query<R>(text: string, values: readonly unknown[] = []) {
      try {
        return (await withinClientTimeout(client.query(text, values as unknown[]), timeoutMs)).rows as R[];
      } catch (error) {
        destroy(error);
        throw error;
      }
    },
    async close() {
      end(new Error('the session was closed'));
      await client.end().catch(() => {});
    },
  };
}

/** One fresh connection: answers, and as a writable primary. Bounded by `timeoutMs` in all. */
async function probe(connection: pg.ClientConfig, timeoutMs: number): Promise<void> {
  const client = new pg.Client(connection);
  client.on('error', () => {});
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the database did not answer within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    const answered = (async () => {
      await client.connect();
      // on in recovery (a replica) and when writes are turned off (default_transaction_read_only)
      const { rows } = await client.query<{ read_only: string }>("SELECT current_setting('transaction_read_only') AS read_only");
      if (rows[0]?.read_only === 'on') throw new Error('the database is read-only (a replica, or writes turned off)');
    })();
    answered.catch(() => {});
    await Promise.race([answered, timedOut]);
  } finally {
    clearTimeout(timer);
    destroySocket(client);
    await client.end().catch(() => {});
  }
}

async function ensureSchema(connection: pg.ClientConfig, schema: string, timeoutMs: number): Promise<void> {
  const client = new pg.Client({ ...connection, query_timeout: timeoutMs });
  // a connection lost meanwhile fails the query below; without a listener it would crash
  client.on('error', () => {});
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
    available: () => true,
    poolStats: () => undefined,
    openSession: () => Promise.resolve(undefined),
    async listen(channel, listener) {
      return pglite.listen(channel, listener);
    },
    async close() {
      await kysely.destroy();
      await pglite.close();
    },
  };
}

/** Sends NOTIFY on `channel` (used by writers to wake read sides). */
export async function notify(kysely: Kysely<object>, channel: string, payload = ''): Promise<void> {
  await sql`SELECT pg_notify(${channel}, ${payload})`.execute(kysely);
}

import type { Kysely } from 'kysely';
import {
  createDatabase,
  migrateToLatest,
  POSTGRES_SSL_MODES,
  type Database,
  type MigrationSet,
  type PostgresSslMode,
  type PostgresTlsOptions,
} from '@chiefofstate/postgres';

/**
 * The read side's own table: one row per account, the balance as of `revision`. It lives in a
 * schema of the read side's choosing, apart from COS's tables: a read model belongs to the team
 * that reads it.
 */
export type AccountBalancesTable = {
  account_id: string;
  owner: string;
  balance_cents: bigint;
  status: string;
  revision: bigint;
  updated_at: Date;
};

// Type aliases, not interfaces: Kysely's withTables wants an index-signature-compatible shape.
export type BalanceTables = {
  account_balances: AccountBalancesTable;
};

/** One account's row. */
export interface AccountBalance {
  readonly accountId: string;
  readonly owner: string;
  readonly balanceCents: bigint;
  /** `OPEN`, `CLOSED` (or `UNSPECIFIED`) */
  readonly status: string;
  /** the COS revision (meta.revision_number) the row reflects */
  readonly revision: bigint;
  readonly updatedAt: Date;
}

/** Where the read side keeps balances. */
export interface BalanceStore {
  /**
   * Writes the row unless the stored one is already at `revision` or later. Returns whether it
   * wrote: false for a re-delivery (at-least-once) or an older event arriving after a newer one.
   */
  apply(balance: AccountBalance): Promise<boolean>;
  /** Every account, by account id. */
  listBalances(): Promise<AccountBalance[]>;
  close(): Promise<void>;
}

/** The read side's schema migrations (Kysely Migrator, run by `openBalanceStore`). */
export const balanceMigrations: MigrationSet = {
  '2026-11-27-001-account-balances': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('account_balances')
        .addColumn('account_id', 'text', (c) => c.primaryKey())
        .addColumn('owner', 'text', (c) => c.notNull())
        .addColumn('balance_cents', 'bigint', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('revision', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'timestamptz', (c) => c.notNull())
        .execute();
    },
  },
};

export interface BalanceStoreOptions {
  /** an open database whose schema already has the table (see `balanceMigrations`) */
  readonly database: Database;
  /** closed with the store; default true */
  readonly ownsDatabase?: boolean;
}

/** The balance table over a `Database` from @chiefofstate/postgres (pg or PGlite, same SQL). */
export function createBalanceStore(options: BalanceStoreOptions): BalanceStore {
  const { database } = options;
  const db = database.kysely.withTables<BalanceTables>();
  return {
    async apply(balance) {
      // One statement, so two deliveries racing each other cannot both win: the row changes only
      // when the incoming revision is newer than the stored one.
      const written = await db
        .insertInto('account_balances')
        .values({
          account_id: balance.accountId,
          owner: balance.owner,
          balance_cents: balance.balanceCents,
          status: balance.status,
          revision: balance.revision,
          updated_at: balance.updatedAt,
        })
        .onConflict((oc) =>
          oc
            .column('account_id')
            .doUpdateSet((eb) => ({
              owner: eb.ref('excluded.owner'),
              balance_cents: eb.ref('excluded.balance_cents'),
              status: eb.ref('excluded.status'),
              revision: eb.ref('excluded.revision'),
              updated_at: eb.ref('excluded.updated_at'),
            }))
            .where('account_balances.revision', '<', (eb) => eb.ref('excluded.revision')),
        )
        .returning('account_id')
        .execute();
      return written.length === 1;
    },
    async listBalances() {
      const rows = await db.selectFrom('account_balances').selectAll().orderBy('account_id').execute();
      return rows.map((row) => ({
        accountId: row.account_id,
        owner: row.owner,
        balanceCents: BigInt(row.balance_cents),
        status: row.status,
        revision: BigInt(row.revision),
        updatedAt: new Date(row.updated_at),
      }));
    },
    async close() {
      if (options.ownsDatabase ?? true) await database.close();
    },
  };
}

export interface OpenBalanceStoreOptions {
  /**
   * `postgres://user:password@host:port/database?schema=name`, with libpq's `sslmode`
   * (disable, require, verify-ca, verify-full), `sslrootcert`, `sslcert`, `sslkey` for TLS;
   * unset: the embedded PGlite
   */
  readonly databaseUrl?: string;
  /** PGlite's directory when no URL is given; unset: in memory */
  readonly dataDir?: string;
  /** schema of the table when the URL names none; default `bank_read_side` */
  readonly schema?: string;
}

export const DEFAULT_BALANCE_SCHEMA = 'bank_read_side';

/** Opens PostgreSQL (URL) or PGlite, migrates the schema, and returns the store. */
export async function openBalanceStore(options: OpenBalanceStoreOptions = {}): Promise<BalanceStore> {
  const database = await createDatabase(
    options.databaseUrl
      ? postgresOptions(options.databaseUrl, options.schema ?? DEFAULT_BALANCE_SCHEMA)
      : { kind: 'embedded', schema: options.schema ?? DEFAULT_BALANCE_SCHEMA, ...(options.dataDir ? { dataDir: options.dataDir } : {}) },
  );
  try {
    await migrateToLatest({ database, migrations: balanceMigrations });
  } catch (error) {
    await database.close();
    throw error;
  }
  return createBalanceStore({ database });
}

function postgresOptions(databaseUrl: string, defaultSchema: string) {
  let url: URL;
  try {
    url = new URL(databaseUrl);
  } catch {
    throw new Error('READ_SIDE_DATABASE_URL is not a URL (postgres://user:password@host:port/database)');
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new Error(`READ_SIDE_DATABASE_URL must start with postgres://, got ${url.protocol}//`);
  }
  return {
    kind: 'postgres' as const,
    host: url.hostname || '127.0.0.1',
    port: Number(url.port || 5432),
    user: decodeURIComponent(url.username || 'postgres'),
    password: decodeURIComponent(url.password),
    database: decodeURIComponent(url.pathname.slice(1)) || 'postgres',
    schema: url.searchParams.get('schema') || defaultSchema,
    poolMax: 4,
    applicationName: 'sample-bank-read-side',
    ...urlTls(url.searchParams),
  };
}

/** libpq's TLS parameters of a connection URL, as createDatabase's `tls`. */
function urlTls(params: URLSearchParams): { tls?: PostgresTlsOptions } {
  const mode = params.get('sslmode') ?? 'disable';
  if (!(POSTGRES_SSL_MODES as readonly string[]).includes(mode)) {
    throw new Error(`READ_SIDE_DATABASE_URL: sslmode=${mode} is not supported; use ${POSTGRES_SSL_MODES.join(', ')}`);
  }
  if (mode === 'disable') return {};
  const file = (name: string) => params.get(name) ?? undefined;
  const [rootCertFile, certFile, keyFile] = [file('sslrootcert'), file('sslcert'), file('sslkey')];
  return {
    tls: {
      mode: mode as PostgresSslMode,
      ...(rootCertFile ? { rootCertFile } : {}),
      ...(certFile ? { certFile } : {}),
      ...(keyFile ? { keyFile } : {}),
    },
  };
}

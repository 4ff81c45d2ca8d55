import { create } from '@bufbuild/protobuf';
import { anyPack, timestampFromDate, type Any } from '@bufbuild/protobuf/wkt';
import * as grpc from '@grpc/grpc-js';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HandleReadSideRequestSchema, MetaDataSchema, ReadSideHandlerService } from '@chiefofstate/protocol';
import { migrateToLatest } from '@chiefofstate/postgres';
import { openTestDatabase, testStoreKinds, type TestDatabase } from '@chiefofstate/postgres/testing';
import { createGrpcJsClient, type GrpcJsClient } from '@chiefofstate/testing';
import { balanceMigrations, createBalanceStore, type AccountBalance } from './balance-store.js';
import {
  AccountStatus,
  AccountOpenedSchema,
  BankAccountSchema,
  DepositedSchema,
  WithdrawnSchema,
} from './gen/bank/v1/bank_pb.js';
import { startBankReadSideServer, type BankReadSideServer } from './read-side-server.js';

// The read side served over real HTTP/2 on loopback, its table in a real database (PGlite, and the
// real PostgreSQL when reachable), called by a stock @grpc/grpc-js client the way COS calls it.

describe.each(await testStoreKinds())('bank read side (%s)', (kind) => {
  let database: TestDatabase;
  let server: BankReadSideServer;
  let client: GrpcJsClient;
  const logged: Array<{ fields: Record<string, unknown>; message: string }> = [];
  const record = (fields: object, message: string) => logged.push({ fields: fields as Record<string, unknown>, message });

  beforeAll(async () => {
    database = await openTestDatabase(kind);
    await migrateToLatest({ database, migrations: balanceMigrations });
    server = await startBankReadSideServer({
      host: '127.0.0.1',
      port: 0,
      store: createBalanceStore({ database, ownsDatabase: false }),
      logger: { debug: record, info: record, warn: record, error: record },
    });
    client = createGrpcJsClient({ service: ReadSideHandlerService, address: `127.0.0.1:${server.port}` });
  });

  afterAll(async () => {
    client?.close();
    await server?.close();
    await database?.dispose();
  });

  const state = (accountId: string, balanceCents: bigint, status = AccountStatus.OPEN): Any =>
    anyPack(BankAccountSchema, create(BankAccountSchema, { accountId, owner: 'alice', balanceCents, status }));

  /** One HandleReadSide call as COS makes it: metadata headers included. */
  async function deliver(accountId: string, revision: number, event: Any, after: Any): Promise<boolean> {
    const metadata = new grpc.Metadata();
    metadata.set('x-cos-entity-id', accountId);
    metadata.set('x-cos-event-tag', '3');
    const { response } = await client.unary(
      ReadSideHandlerService.method.handleReadSide,
      create(HandleReadSideRequestSchema, {
        event,
        state: after,
        meta: create(MetaDataSchema, {
          entityId: accountId,
          revisionNumber: revision,
          revisionDate: timestampFromDate(new Date(Date.UTC(2026, 10, 27, 10, 0, revision))),
        }),
        readSideId: 'balances',
      }),
      { metadata },
    );
    return response.successful;
  }

  const balanceOf = async (accountId: string): Promise<AccountBalance | undefined> =>
    (await server.listBalances()).find((b) => b.accountId === accountId);

  const opened = (accountId: string) => anyPack(AccountOpenedSchema, create(AccountOpenedSchema, { accountId, owner: 'alice' }));
  const deposited = (amountCents: bigint) => anyPack(DepositedSchema, create(DepositedSchema, { amountCents }));
  const withdrawn = (amountCents: bigint) => anyPack(WithdrawnSchema, create(WithdrawnSchema, { amountCents }));

  it('applies each event by storing the state it produced, and logs the balance', async () => {
    expect(await deliver('acc-1', 1, opened('acc-1'), state('acc-1', 0n))).toBe(true);
    expect(await deliver('acc-1', 2, deposited(1000n), state('acc-1', 1000n))).toBe(true);
    expect(await deliver('acc-1', 3, withdrawn(300n), state('acc-1', 700n))).toBe(true);
    expect(await deliver('acc-2', 1, opened('acc-2'), state('acc-2', 0n))).toBe(true);

    expect(await server.listBalances()).toEqual([
      {
        accountId: 'acc-1',
        owner: 'alice',
        balanceCents: 700n,
        status: 'OPEN',
        revision: 3n,
        updatedAt: new Date(Date.UTC(2026, 10, 27, 10, 0, 3)),
      },
      expect.objectContaining({ accountId: 'acc-2', balanceCents: 0n, revision: 1n }),
    ]);
    expect(logged.filter((l) => l.message === 'balance applied').at(-2)?.fields).toEqual({
      accountId: 'acc-1',
      balanceCents: '700',
      status: 'OPEN',
      revision: '3',
      eventTag: '3',
    });
  });

  it('answers true to a re-delivery of the same revision and changes nothing', async () => {
    // A (wrong) balance under a revision already stored would show if the guard let it through.
    expect(await deliver('acc-1', 3, withdrawn(300n), state('acc-1', 12345n))).toBe(true);
    expect(await balanceOf('acc-1')).toMatchObject({ balanceCents: 700n, revision: 3n });
  });

  it('ignores an older revision arriving after a newer one', async () => {
    expect(await deliver('acc-1', 4, deposited(50n), state('acc-1', 750n))).toBe(true);
    expect(await deliver('acc-1', 2, deposited(1000n), state('acc-1', 1000n))).toBe(true);
    expect(await balanceOf('acc-1')).toMatchObject({ balanceCents: 750n, revision: 4n });
    expect(await deliver('acc-1', 5, withdrawn(750n), state('acc-1', 0n, AccountStatus.CLOSED))).toBe(true);
    expect(await balanceOf('acc-1')).toMatchObject({ balanceCents: 0n, status: 'CLOSED', revision: 5n });
  });

  it('answers successful:false on a storage failure, and applies the retry once storage is back', async () => {
    await sql`DROP TABLE account_balances`.execute(database.kysely);
    try {
      expect(await deliver('acc-3', 1, opened('acc-3'), state('acc-3', 0n))).toBe(false);
    } finally {
      await balanceMigrations['2026-11-27-001-account-balances']!.up(database.kysely);
    }
    expect(logged.at(-1)?.message).toBe('could not store the balance');
    expect(await deliver('acc-3', 1, opened('acc-3'), state('acc-3', 0n))).toBe(true);
    expect(await server.listBalances()).toEqual([expect.objectContaining({ accountId: 'acc-3', revision: 1n })]);
  });

  it('refuses a state that is not a bank account', async () => {
    expect(await deliver('acc-4', 1, opened('acc-4'), deposited(1n))).toBe(false);
    expect(await balanceOf('acc-4')).toBeUndefined();
  });
});

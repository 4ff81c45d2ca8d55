import { create, fromBinary, type DescMessage, type MessageInitShape } from '@bufbuild/protobuf';
import { anyPack, anyUnpack, AnySchema, EmptySchema, type Any } from '@bufbuild/protobuf/wkt';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  emptyState,
  HandleCommandRequestSchema,
  HandleEventRequestSchema,
  MetaDataSchema,
  WriteSideHandlerService,
} from '@chiefofstate/protocol';
import { createGrpcJsClient, decodeRpcStatus, type GrpcJsClient } from '@chiefofstate/testing';
import {
  AccountOpenedSchema,
  AccountStatus,
  BankAccountSchema,
  CloseAccountSchema,
  DepositSchema,
  DepositedSchema,
  InsufficientFundsSchema,
  OpenAccountSchema,
  WithdrawSchema,
  WithdrawnSchema,
  type BankAccount,
} from './gen/bank/v1/bank_pb.js';
import { startBankHandlerServer, type BankHandlerServer } from './server.js';

// The handler served over real HTTP/2 on loopback and called by a stock @grpc/grpc-js client,
// exactly as COS (or any gRPC client in any language) would call it.

let server: BankHandlerServer;
let client: GrpcJsClient;

beforeAll(async () => {
  server = await startBankHandlerServer({ host: '127.0.0.1', port: 0 });
  client = createGrpcJsClient({ service: WriteSideHandlerService, address: `127.0.0.1:${server.port}` });
});

afterAll(async () => {
  client?.close();
  await server?.close();
});

const pack = <D extends DescMessage>(schema: D, init?: MessageInitShape<D>): Any => anyPack(schema, create(schema, init));
const meta = (entityId: string, revisionNumber = 0) => create(MetaDataSchema, { entityId, revisionNumber });

async function handleCommand(command: Any, priorState: Any, entityId = 'acc-1'): Promise<Any[]> {
  const { response } = await client.unary(
    WriteSideHandlerService.method.handleCommand,
    create(HandleCommandRequestSchema, { command, priorState, priorEventMeta: meta(entityId) }),
  );
  return response.events;
}

async function handleEvent(event: Any, priorState: Any): Promise<Any> {
  const { response } = await client.unary(
    WriteSideHandlerService.method.handleEvent,
    create(HandleEventRequestSchema, { event, priorState, eventMeta: meta('acc-1', 1) }),
  );
  expect(response.resultingState).toBeDefined();
  return response.resultingState!;
}

/** What COS does for one command: HandleCommand, then HandleEvent for each event in order. */
async function process(command: Any, state: Any, entityId = 'acc-1'): Promise<Any> {
  for (const event of await handleCommand(command, state, entityId)) state = await handleEvent(event, state);
  return state;
}

function account(state: Any): BankAccount {
  expect(state.typeUrl).toBe('type.googleapis.com/bank.v1.BankAccount');
  return anyUnpack(state, BankAccountSchema)!;
}

async function grpcError(promise: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await promise;
  } catch (error) {
    return error as grpc.ServiceError;
  }
  throw new Error('expected the call to fail');
}

describe('WriteSideHandlerService over gRPC', () => {
  it('opens an account from the Empty prior state COS sends for a new entity', async () => {
    const empty = emptyState();
    expect(empty.typeUrl).toBe('type.googleapis.com/google.protobuf.Empty');
    const events = await handleCommand(pack(OpenAccountSchema, { owner: 'alice' }), empty, 'acc-42');
    expect(events).toHaveLength(1);
    expect(anyUnpack(events[0]!, AccountOpenedSchema)).toEqual(
      create(AccountOpenedSchema, { accountId: 'acc-42', owner: 'alice' }),
    );
    const state = account(await handleEvent(events[0]!, empty));
    expect(state).toEqual(
      create(BankAccountSchema, { accountId: 'acc-42', owner: 'alice', balanceCents: 0n, status: AccountStatus.OPEN }),
    );
  });

  it('also takes a packed Empty message and an Any left unset as "no state yet"', async () => {
    const events = await handleCommand(pack(OpenAccountSchema, { owner: 'alice' }), pack(EmptySchema));
    expect(events).toHaveLength(1);
    const unset = create(AnySchema);
    expect(account(await handleEvent(events[0]!, unset)).owner).toBe('alice');
  });

  it('answers an opening deposit with two events in the repeated field, chained by HandleEvent', async () => {
    const events = await handleCommand(pack(OpenAccountSchema, { owner: 'bob', initialDepositCents: 1000n }), emptyState());
    expect(events.map((e) => e.typeUrl)).toEqual([
      'type.googleapis.com/bank.v1.AccountOpened',
      'type.googleapis.com/bank.v1.Deposited',
    ]);
    let state = emptyState();
    for (const event of events) state = await handleEvent(event, state);
    expect(account(state).balanceCents).toBe(1000n);
  });

  it('deposits, withdraws and closes', async () => {
    let state = await process(pack(OpenAccountSchema, { owner: 'carol' }), emptyState());
    state = await process(pack(DepositSchema, { amountCents: 100n }), state);
    const withdrawn = await handleCommand(pack(WithdrawSchema, { amountCents: 30n }), state);
    expect(anyUnpack(withdrawn[0]!, WithdrawnSchema)?.amountCents).toBe(30n);
    state = await handleEvent(withdrawn[0]!, state);
    expect(account(state).balanceCents).toBe(70n);
    state = await process(pack(WithdrawSchema, { amountCents: 70n }), state);
    state = await process(pack(CloseAccountSchema), state);
    expect(account(state)).toEqual(expect.objectContaining({ balanceCents: 0n, status: AccountStatus.CLOSED }));
  });

  it('refuses an overdraft with FAILED_PRECONDITION and an InsufficientFunds detail intact', async () => {
    const state = await process(pack(OpenAccountSchema, { owner: 'dave', initialDepositCents: 70n }), emptyState());
    const error = await grpcError(handleCommand(pack(WithdrawSchema, { amountCents: 500n }), state));
    expect(error.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(error.details).toBe('insufficient funds: balance 70, requested 500');

    const [bin] = error.metadata.get('grpc-status-details-bin');
    expect(bin).toBeInstanceOf(Buffer);
    const status = decodeRpcStatus(bin as Buffer);
    expect(status.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(status.message).toBe('insufficient funds: balance 70, requested 500');
    expect(status.details).toHaveLength(1);
    expect(status.details[0]!.typeUrl).toBe('type.googleapis.com/bank.v1.InsufficientFunds');
    expect(fromBinary(InsufficientFundsSchema, status.details[0]!.value)).toEqual(
      create(InsufficientFundsSchema, { balanceCents: 70n, requestedCents: 500n }),
    );
  });

  it('refuses opening twice and moving money on an account that was never opened', async () => {
    const state = await process(pack(OpenAccountSchema, { owner: 'erin' }), emptyState());
    const twice = await grpcError(handleCommand(pack(OpenAccountSchema, { owner: 'erin' }), state));
    expect([twice.code, twice.details]).toEqual([grpc.status.FAILED_PRECONDITION, 'account already open']);

    for (const command of [pack(DepositSchema, { amountCents: 1n }), pack(WithdrawSchema, { amountCents: 1n })]) {
      const error = await grpcError(handleCommand(command, emptyState()));
      expect([error.code, error.details]).toEqual([grpc.status.FAILED_PRECONDITION, 'account is not open']);
    }
  });

  it('refuses non-positive amounts with INVALID_ARGUMENT', async () => {
    const state = await process(pack(OpenAccountSchema, { owner: 'frank' }), emptyState());
    const error = await grpcError(handleCommand(pack(DepositSchema, { amountCents: -3n }), state));
    expect([error.code, error.details]).toEqual([grpc.status.INVALID_ARGUMENT, 'amount must be positive']);
  });

  it('refuses commands and events of other types, and missing ones, with INVALID_ARGUMENT', async () => {
    const notACommand = pack(DepositedSchema, { amountCents: 1n });
    const error = await grpcError(handleCommand(notACommand, emptyState()));
    expect([error.code, error.details]).toEqual([
      grpc.status.INVALID_ARGUMENT,
      'unsupported command type: type.googleapis.com/bank.v1.Deposited',
    ]);
    const foreign = create(AnySchema, { typeUrl: 'type.googleapis.com/acme.v1.Launch', value: new Uint8Array([8, 1]) });
    expect((await grpcError(handleCommand(foreign, emptyState()))).details).toBe(
      'unsupported command type: type.googleapis.com/acme.v1.Launch',
    );
    expect((await grpcError(handleCommand(create(AnySchema), emptyState()))).details).toBe('command is required');

    const notAnEvent = pack(DepositSchema, { amountCents: 1n });
    const eventError = await grpcError(handleEvent(notAnEvent, emptyState()));
    expect([eventError.code, eventError.details]).toEqual([
      grpc.status.INVALID_ARGUMENT,
      'unsupported event type: type.googleapis.com/bank.v1.Deposit',
    ]);
  });

  it('refuses a prior state that is not a bank account', async () => {
    const error = await grpcError(handleCommand(pack(DepositSchema, { amountCents: 1n }), pack(DepositedSchema)));
    expect([error.code, error.details]).toEqual([
      grpc.status.INVALID_ARGUMENT,
      'unexpected prior state type: type.googleapis.com/bank.v1.Deposited',
    ]);
  });

  it('refuses an event that cannot follow the prior state', async () => {
    const error = await grpcError(handleEvent(pack(DepositedSchema, { amountCents: 1n }), emptyState()));
    expect([error.code, error.details]).toEqual([
      grpc.status.INVALID_ARGUMENT,
      'bank.v1.Deposited applied before AccountOpened',
    ]);
  });
});

import { create } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import {
  CommandRejectedError,
  InsufficientFundsError,
  InvalidCommandError,
  InvalidEventError,
  decide,
  evolve,
  type BankCommand,
  type BankEvent,
} from './bank-account.js';
import {
  AccountClosedSchema,
  AccountOpenedSchema,
  AccountStatus,
  CloseAccountSchema,
  DepositSchema,
  DepositedSchema,
  OpenAccountSchema,
  WithdrawSchema,
  WithdrawnSchema,
  type BankAccount,
} from './gen/bank/v1/bank_pb.js';

const ctx = { accountId: 'acc-1' };
const open = (owner = 'alice', initialDepositCents = 0n) => create(OpenAccountSchema, { owner, initialDepositCents });
const deposit = (amountCents: bigint) => create(DepositSchema, { amountCents });
const withdraw = (amountCents: bigint) => create(WithdrawSchema, { amountCents });
const close = () => create(CloseAccountSchema);

/** Runs commands the way COS does: decide on the current state, then fold every event in. */
function run(commands: BankCommand[]): BankAccount | undefined {
  let state: BankAccount | undefined;
  for (const command of commands) {
    for (const event of decide(command, state, ctx)) state = evolve(state, event);
  }
  return state;
}

function refusal(fn: () => unknown): Error {
  try {
    fn();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected the command to be refused');
}

describe('decide', () => {
  it('opens an account with the entity id as account id', () => {
    expect(decide(open(), undefined, ctx)).toEqual([create(AccountOpenedSchema, { accountId: 'acc-1', owner: 'alice' })]);
  });

  it('opens with an initial deposit as two events, in order', () => {
    expect(decide(open('bob', 2500n), undefined, ctx)).toEqual([
      create(AccountOpenedSchema, { accountId: 'acc-1', owner: 'bob' }),
      create(DepositedSchema, { amountCents: 2500n }),
    ]);
  });

  it('refuses a blank owner and a negative initial deposit as invalid', () => {
    expect(refusal(() => decide(open('  '), undefined, ctx))).toEqual(new InvalidCommandError('owner is required'));
    expect(refusal(() => decide(open('alice', -1n), undefined, ctx))).toEqual(
      new InvalidCommandError('initial deposit must not be negative'),
    );
  });

  it('opens an account only once', () => {
    const error = refusal(() => decide(open(), run([open()]), ctx));
    expect(error).toBeInstanceOf(CommandRejectedError);
    expect(error.message).toBe('account already open');
  });

  it('deposits and withdraws on an open account', () => {
    const state = run([open()]);
    expect(decide(deposit(100n), state, ctx)).toEqual([create(DepositedSchema, { amountCents: 100n })]);
    expect(decide(withdraw(100n), run([open(), deposit(100n)]), ctx)).toEqual([
      create(WithdrawnSchema, { amountCents: 100n }),
    ]);
  });

  it('refuses zero and negative amounts before looking at the state', () => {
    for (const command of [deposit(0n), deposit(-5n), withdraw(0n), withdraw(-5n)]) {
      const error = refusal(() => decide(command, undefined, ctx));
      expect(error).toBeInstanceOf(InvalidCommandError);
      expect(error.message).toBe('amount must be positive');
    }
  });

  it('refuses deposits, withdrawals and closing on an account that is not open', () => {
    for (const command of [deposit(1n), withdraw(1n), close()]) {
      const error = refusal(() => decide(command, undefined, ctx));
      expect(error).toBeInstanceOf(CommandRejectedError);
      expect(error.message).toBe('account is not open');
    }
  });

  it('refuses a withdrawal above the balance with the numbers attached', () => {
    const error = refusal(() => decide(withdraw(101n), run([open(), deposit(100n)]), ctx));
    expect(error).toBeInstanceOf(InsufficientFundsError);
    expect(error).toBeInstanceOf(CommandRejectedError);
    expect(error.message).toBe('insufficient funds: balance 100, requested 101');
    expect((error as InsufficientFundsError).balanceCents).toBe(100n);
    expect((error as InsufficientFundsError).requestedCents).toBe(101n);
  });

  it('refuses a deposit that would overflow int64', () => {
    const state = run([open('alice', 2n ** 63n - 10n)]);
    expect(decide(deposit(9n), state, ctx)).toHaveLength(1);
    expect(refusal(() => decide(deposit(10n), state, ctx)).message).toBe('deposit would overflow the balance');
  });

  it('closes only an empty account, and a closed account takes nothing more', () => {
    expect(refusal(() => decide(close(), run([open('alice', 1n)]), ctx)).message).toBe(
      'balance must be 0 to close the account, it is 1',
    );
    expect(decide(close(), run([open()]), ctx)).toEqual([create(AccountClosedSchema)]);
    const closed = run([open(), close()]);
    for (const command of [deposit(1n), withdraw(1n), close()]) {
      expect(refusal(() => decide(command, closed, ctx)).message).toBe('account is closed');
    }
    expect(refusal(() => decide(open(), closed, ctx)).message).toBe('account is closed');
  });
});

describe('evolve', () => {
  it('builds the account from its events', () => {
    expect(run([open('alice', 1000n), deposit(500n), withdraw(300n)])).toEqual(
      expect.objectContaining({ accountId: 'acc-1', owner: 'alice', balanceCents: 1200n, status: AccountStatus.OPEN }),
    );
    expect(run([open(), close()])?.status).toBe(AccountStatus.CLOSED);
  });

  it('never mutates the prior state', () => {
    const before = run([open('alice', 10n)])!;
    const after = evolve(before, create(DepositedSchema, { amountCents: 5n }));
    expect(before.balanceCents).toBe(10n);
    expect(after.balanceCents).toBe(15n);
  });

  it('rejects events that cannot follow the state', () => {
    const events: BankEvent[] = [create(DepositedSchema, { amountCents: 1n }), create(AccountClosedSchema)];
    for (const event of events) expect(refusal(() => evolve(undefined, event))).toBeInstanceOf(InvalidEventError);
    expect(refusal(() => evolve(run([open()]), create(AccountOpenedSchema, { accountId: 'x', owner: 'y' })))).toBeInstanceOf(
      InvalidEventError,
    );
  });
});

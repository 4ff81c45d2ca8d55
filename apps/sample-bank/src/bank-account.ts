import { clone, create } from '@bufbuild/protobuf';
import {
  AccountClosedSchema,
  AccountOpenedSchema,
  AccountStatus,
  BankAccountSchema,
  DepositedSchema,
  WithdrawnSchema,
  type AccountClosed,
  type AccountOpened,
  type BankAccount,
  type CloseAccount,
  type Deposit,
  type Deposited,
  type OpenAccount,
  type Withdraw,
  type Withdrawn,
} from './gen/bank/v1/bank_pb.js';

/**
 * The bank account's business rules, as two pure functions and nothing else: no gRPC, no Any, no
 * I/O. `decide` turns a command into events (or refuses it); `evolve` folds one event into the
 * state. COS calls them through the write handler: HandleCommand -> decide, HandleEvent -> evolve.
 */

/** Every command the account accepts; protobuf-es messages are told apart by `$typeName`. */
export type BankCommand = OpenAccount | Deposit | Withdraw | CloseAccount;

/** Every event the account records. */
export type BankEvent = AccountOpened | Deposited | Withdrawn | AccountClosed;

/** What `decide` knows besides the command and the state. */
export interface DecideContext {
  /** the COS entity id, which is the account id */
  readonly accountId: string;
}

/** The command itself is malformed (e.g. a zero amount); maps to INVALID_ARGUMENT. */
export class InvalidCommandError extends Error {
  readonly code = 'invalid_command';
  override name = 'InvalidCommandError';
}

/** The command is well formed but the account's state refuses it; maps to FAILED_PRECONDITION. */
export class CommandRejectedError extends Error {
  readonly code: string = 'command_rejected';
  override name = 'CommandRejectedError';
}

/** A withdrawal larger than the balance; carries the numbers so clients need not parse text. */
export class InsufficientFundsError extends CommandRejectedError {
  override readonly code = 'insufficient_funds';
  override name = 'InsufficientFundsError';
  constructor(
    readonly balanceCents: bigint,
    readonly requestedCents: bigint,
  ) {
    super(`insufficient funds: balance ${balanceCents}, requested ${requestedCents}`);
  }
}

/** An event that cannot apply to the state it was given (it was not produced by `decide`). */
export class InvalidEventError extends Error {
  readonly code = 'invalid_event';
  override name = 'InvalidEventError';
}

/** int64 is the wire type of every amount; a balance must stay representable. */
const MAX_CENTS = 2n ** 63n - 1n;

/**
 * Decides what happens when `command` reaches the account in state `account` (undefined before
 * it is opened). Returns the events to record, in order; throws InvalidCommandError or
 * CommandRejectedError to refuse.
 */
export function decide(command: BankCommand, account: BankAccount | undefined, context: DecideContext): BankEvent[] {
  switch (command.$typeName) {
    case 'bank.v1.OpenAccount': {
      if (command.owner.trim() === '') throw new InvalidCommandError('owner is required');
      if (command.initialDepositCents < 0n) throw new InvalidCommandError('initial deposit must not be negative');
      if (account !== undefined) {
        throw new CommandRejectedError(
          account.status === AccountStatus.CLOSED ? 'account is closed' : 'account already open',
        );
      }
      const opened = create(AccountOpenedSchema, { accountId: context.accountId, owner: command.owner });
      // Two events from one command: COS applies and persists them together, or neither.
      return command.initialDepositCents > 0n
        ? [opened, create(DepositedSchema, { amountCents: command.initialDepositCents })]
        : [opened];
    }
    case 'bank.v1.Deposit': {
      requirePositive(command.amountCents);
      const open = requireOpen(account);
      if (open.balanceCents > MAX_CENTS - command.amountCents) {
        throw new CommandRejectedError('deposit would overflow the balance');
      }
      return [create(DepositedSchema, { amountCents: command.amountCents })];
    }
    case 'bank.v1.Withdraw': {
      requirePositive(command.amountCents);
      const open = requireOpen(account);
      if (command.amountCents > open.balanceCents) {
        throw new InsufficientFundsError(open.balanceCents, command.amountCents);
      }
      return [create(WithdrawnSchema, { amountCents: command.amountCents })];
    }
    case 'bank.v1.CloseAccount': {
      const open = requireOpen(account);
      if (open.balanceCents !== 0n) {
        throw new CommandRejectedError(`balance must be 0 to close the account, it is ${open.balanceCents}`);
      }
      return [create(AccountClosedSchema)];
    }
  }
}

/** Applies one event to the state it follows (undefined before AccountOpened). */
export function evolve(account: BankAccount | undefined, event: BankEvent): BankAccount {
  if (event.$typeName === 'bank.v1.AccountOpened') {
    if (account !== undefined) throw new InvalidEventError('AccountOpened applied to an existing account');
    return create(BankAccountSchema, {
      accountId: event.accountId,
      owner: event.owner,
      balanceCents: 0n,
      status: AccountStatus.OPEN,
    });
  }
  if (account === undefined) throw new InvalidEventError(`${event.$typeName} applied before AccountOpened`);
  const next = clone(BankAccountSchema, account);
  switch (event.$typeName) {
    case 'bank.v1.Deposited':
      next.balanceCents += event.amountCents;
      break;
    case 'bank.v1.Withdrawn':
      next.balanceCents -= event.amountCents;
      break;
    case 'bank.v1.AccountClosed':
      next.status = AccountStatus.CLOSED;
      break;
  }
  return next;
}

function requirePositive(amountCents: bigint): void {
  if (amountCents <= 0n) throw new InvalidCommandError('amount must be positive');
}

function requireOpen(account: BankAccount | undefined): BankAccount {
  if (account === undefined) throw new CommandRejectedError('account is not open');
  if (account.status === AccountStatus.CLOSED) throw new CommandRejectedError('account is closed');
  return account;
}

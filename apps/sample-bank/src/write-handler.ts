import { createRegistry, type DescMessage, type Message } from '@bufbuild/protobuf';
import { anyPack, anyUnpack, EmptySchema, type Any } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError, type ServiceImpl } from '@connectrpc/connect';
import type { WriteSideHandlerService, HandleCommandRequest, HandleEventRequest } from '@chiefofstate/protocol';
import type { Logger } from '@chiefofstate/core';
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
import { grpcCodeName } from './code-name.js';
import { BankAccountSchema, InsufficientFundsSchema, file_bank_v1_bank, type BankAccount } from './gen/bank/v1/bank_pb.js';

/**
 * The gRPC glue between COS and the pure rules in bank-account.ts: unpack the Any payloads,
 * call decide / evolve, pack the results, and turn refusals into gRPC status codes. COS passes
 * the code, the message and the details on to whoever sent the command.
 */

/** Every message of bank.proto, plus google.protobuf.Empty (the prior state of a new account). */
export const bankRegistry = createRegistry(file_bank_v1_bank, EmptySchema);

const COMMANDS: ReadonlySet<string> = new Set([
  'bank.v1.OpenAccount',
  'bank.v1.Deposit',
  'bank.v1.Withdraw',
  'bank.v1.CloseAccount',
]);
const EVENTS: ReadonlySet<string> = new Set([
  'bank.v1.AccountOpened',
  'bank.v1.Deposited',
  'bank.v1.Withdrawn',
  'bank.v1.AccountClosed',
]);

export interface BankWriteHandlerOptions {
  /** a pino logger fits */
  logger?: Logger;
}

/** The WriteSideHandlerService implementation, ready for `router.service(WriteSideHandlerService, ...)`. */
export function createBankWriteHandler(
  options: BankWriteHandlerOptions = {},
): ServiceImpl<typeof WriteSideHandlerService> {
  const logger = options.logger;
  return {
    handleCommand(request: HandleCommandRequest) {
      const command = unpack(request.command, COMMANDS, 'command') as BankCommand;
      const account = priorAccount(request.priorState);
      const accountId = request.priorEventMeta?.entityId ?? '';
      let events: BankEvent[];
      try {
        events = decide(command, account, { accountId });
      } catch (error) {
        const refusal = toConnectError(error);
        logger?.info({ accountId, command: command.$typeName, code: grpcCodeName(refusal.code) }, refusal.rawMessage);
        throw refusal;
      }
      logger?.debug({ accountId, command: command.$typeName, events: events.map((e) => e.$typeName) }, 'command accepted');
      // `events` (not the deprecated single `event`): COS applies them in order, atomically.
      return { events: events.map(pack) };
    },

    handleEvent(request: HandleEventRequest) {
      const event = unpack(request.event, EVENTS, 'event') as BankEvent;
      const account = priorAccount(request.priorState);
      try {
        return { resultingState: anyPack(BankAccountSchema, evolve(account, event)) };
      } catch (error) {
        throw toConnectError(error);
      }
    },
  };
}

/**
 * The prior state COS hands over: Any{google.protobuf.Empty} for an account that has no events
 * yet, else the BankAccount the last event produced.
 */
function priorAccount(state: Any | undefined): BankAccount | undefined {
  if (state === undefined || state.typeUrl === '') return undefined;
  const message = anyUnpack(state, bankRegistry);
  if (message?.$typeName === EmptySchema.typeName) return undefined;
  if (message?.$typeName === BankAccountSchema.typeName) return message as BankAccount;
  throw new ConnectError(`unexpected prior state type: ${state.typeUrl}`, Code.InvalidArgument);
}

function unpack(any: Any | undefined, accepted: ReadonlySet<string>, what: string): Message {
  if (any === undefined || any.typeUrl === '') throw new ConnectError(`${what} is required`, Code.InvalidArgument);
  let message: Message | undefined;
  try {
    message = anyUnpack(any, bankRegistry);
  } catch {
    throw new ConnectError(`${what} ${any.typeUrl} could not be decoded`, Code.InvalidArgument);
  }
  if (message === undefined || !accepted.has(message.$typeName)) {
    throw new ConnectError(`unsupported ${what} type: ${any.typeUrl}`, Code.InvalidArgument);
  }
  return message;
}

function pack(event: BankEvent): Any {
  const schema = bankRegistry.getMessage(event.$typeName) as DescMessage;
  return anyPack(schema, event);
}

function toConnectError(error: unknown): ConnectError {
  if (error instanceof InsufficientFundsError) {
    // The rich detail travels in grpc-status-details-bin; COS forwards it untouched.
    return new ConnectError(error.message, Code.FailedPrecondition, undefined, [
      {
        desc: InsufficientFundsSchema,
        value: { balanceCents: error.balanceCents, requestedCents: error.requestedCents },
      },
    ]);
  }
  if (error instanceof CommandRejectedError) return new ConnectError(error.message, Code.FailedPrecondition);
  if (error instanceof InvalidCommandError || error instanceof InvalidEventError) {
    return new ConnectError(error.message, Code.InvalidArgument);
  }
  return ConnectError.from(error, Code.Internal);
}

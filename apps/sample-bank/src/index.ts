// The sample bank write handler: the pure rules, the gRPC handler, its server, and the CLI.
export {
  decide,
  evolve,
  InvalidCommandError,
  CommandRejectedError,
  InsufficientFundsError,
  InvalidEventError,
  type BankCommand,
  type BankEvent,
  type DecideContext,
} from './bank-account.js';
export {
  createBankWriteHandler,
  bankRegistry,
  type BankHandlerLogger,
  type BankWriteHandlerOptions,
} from './write-handler.js';
export {
  startBankHandlerServer,
  DEFAULT_HOST,
  DEFAULT_PORT,
  type BankHandlerServer,
  type BankHandlerServerOptions,
} from './server.js';
export { bankHandlerConfigFromEnv, type BankHandlerConfig } from './config.js';
export { runCli, cosBaseUrl, DEFAULT_COS_ADDRESS, USAGE, type CliIo } from './run-cli.js';
export { grpcCodeName } from './code-name.js';
export * from './gen/bank/v1/bank_pb.js';

// The sample bank write handler (rules, gRPC handler, server, CLI) and read side (balance table).
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
  type BankWriteHandlerOptions,
} from './write-handler.js';
export {
  startBankHandlerServer,
  DEFAULT_HOST,
  DEFAULT_PORT,
  type BankHandlerServer,
  type BankHandlerServerOptions,
} from './server.js';
export {
  bankHandlerConfigFromEnv,
  bankReadSideConfigFromEnv,
  type BankHandlerConfig,
  type BankReadSideConfig,
} from './config.js';
export { createBankReadSideHandler, type BankReadSideHandlerOptions } from './read-side.js';
export {
  startBankReadSideServer,
  DEFAULT_READ_SIDE_PORT,
  type BankReadSideServer,
  type BankReadSideServerOptions,
} from './read-side-server.js';
export {
  openBalanceStore,
  createBalanceStore,
  balanceMigrations,
  DEFAULT_BALANCE_SCHEMA,
  type AccountBalance,
  type AccountBalancesTable,
  type BalanceStore,
  type BalanceStoreOptions,
  type BalanceTables,
  type OpenBalanceStoreOptions,
} from './balance-store.js';
export { type Http2Server } from './http2-server.js';
export { runCli, cosBaseUrl, DEFAULT_COS_ADDRESS, USAGE, type CliIo } from './run-cli.js';
export { renderChange, watchAccount, type WatchIo, type WatchOptions } from './watch.js';
export { grpcCodeName } from './code-name.js';
export * from './gen/bank/v1/bank_pb.js';

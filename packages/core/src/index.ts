export {
  CosError,
  InvalidArgumentError,
  NotFoundError,
  MessageTooLargeError,
  OverloadedError,
  JournalConflictError,
  StoreError,
  CommitOutcomeUnknownError,
  HandlerFailedError,
  HandlerUnavailableError,
  CircuitOpenError,
  PeerUnreachableError,
  PeerRefusedError,
  UnauthenticatedError,
  PermissionDeniedError,
  FencedError,
  DeadlineExceededError,
  ShuttingDownError,
  ConfigError,
  InternalError,
  RevisionMismatchError,
  IdempotencyKeyReusedError,
  isCosError,
  publicMessageOf,
  type CosErrorOptions,
} from './errors.js';
export { javaStringHashCode, shardOf } from './shard.js';
export { MAX_ENTITY_ID_LENGTH, assertValidEntityId } from './entity-id.js';
export { traceLogFields, type SpanIds } from './trace-log-fields.js';
export { MAX_TIMER_MS, timerDelay } from './timer-delay.js';
export { silentLogger, type Logger } from './logger.js';
export { TRACER_NAME } from './tracer-name.js';
export type {
  CallScope,
  CommandRequest,
  EntityState,
  ForwardingMark,
  GetStateOptions,
  IncomingCommandRequest,
  OutgoingCallOptions,
} from './command-request.js';

export {
  CosError,
  InvalidArgumentError,
  NotFoundError,
  MessageTooLargeError,
  OverloadedError,
  JournalConflictError,
  StoreError,
  HandlerFailedError,
  HandlerUnavailableError,
  PeerUnreachableError,
  DeadlineExceededError,
  ShuttingDownError,
  ConfigError,
  InternalError,
  isCosError,
} from './errors.js';
export { javaStringHashCode, shardOf } from './shard.js';
export { MAX_ENTITY_ID_LENGTH, assertValidEntityId } from './entity-id.js';
export { traceLogFields, type SpanIds } from './trace-log-fields.js';

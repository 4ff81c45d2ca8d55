export {
  createReadSideEngine,
  controlPayload,
  READ_SIDE_CONTROL_CHANNEL,
  type ReadSideDefinition,
  type ReadSideEngine,
  type ReadSideEngineOptions,
  type ReadSideStreamStatus,
} from './engine.js';
export {
  backoffMs,
  decideOnFailure,
  DEFAULT_RETRY,
  type FailureDecision,
  type FailurePolicy,
  type RetryOptions,
} from './failure-policy.js';
export { createDeferredManager, type ReadSideManagerCalls } from './deferred-manager.js';
export { entityIdHeader, toReadSideRequest } from './delivery-request.js';
export { createReadSideManager, type ReadSideManager, type ReadSideManagerOptions, type ShardPosition } from './manager.js';
export type {
  BatchCallOptions,
  JournalEventRecord,
  JournalReader,
  ListenPort,
  OffsetPort,
  OwnershipPort,
  ReadSideCallOptions,
  ReadSideHandlerPort,
  ReleaseReason,
  StoredOffset,
  StreamHostPort,
} from './ports.js';
export type { ControlAction, DeliveryOutcome, StreamStats } from './stream-worker.js';

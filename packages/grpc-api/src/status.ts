import { trace, type Context } from '@opentelemetry/api';
import { Code, ConnectError } from '@connectrpc/connect';
import {
  CosError,
  DeadlineExceededError,
  HandlerFailedError,
  HandlerUnavailableError,
  InvalidArgumentError,
  JournalConflictError,
  MessageTooLargeError,
  NotFoundError,
  OverloadedError,
  PeerUnreachableError,
  ShuttingDownError,
  StoreError,
  traceLogFields,
} from '@chiefofstate/core';

/**
 * The one place where COS failures become gRPC statuses. Everything below the edge throws
 * CosError subclasses; callers see a status code and a message they can act on.
 */
export function toConnectError(error: unknown): ConnectError {
  if (error instanceof ConnectError) return error;
  if (error instanceof HandlerFailedError) {
    // The user's handler spoke: its code, message and rich details reach the caller unchanged.
    const connectError = new ConnectError(error.statusMessage, error.statusCode as Code, undefined, undefined, error);
    // Raw details (type name + bytes) are re-serialized verbatim into grpc-status-details-bin.
    for (const detail of error.details) {
      connectError.details.push({
        type: detail.typeUrl.slice(detail.typeUrl.lastIndexOf('/') + 1),
        value: detail.value,
        debug: undefined,
      });
    }
    return connectError;
  }
  if (error instanceof CosError) return new ConnectError(error.message, codeOf(error), undefined, undefined, error);
  return new ConnectError('internal error', Code.Internal, undefined, undefined, error);
}

function codeOf(error: CosError): Code {
  if (error instanceof InvalidArgumentError) return Code.InvalidArgument;
  if (error instanceof NotFoundError) return Code.NotFound;
  if (error instanceof MessageTooLargeError) return Code.ResourceExhausted;
  // nothing was done: retry later, with backoff
  if (error instanceof OverloadedError) return Code.ResourceExhausted;
  if (error instanceof DeadlineExceededError) return Code.DeadlineExceeded;
  if (error instanceof HandlerUnavailableError) return Code.Unavailable;
  if (error instanceof ShuttingDownError) return Code.Unavailable;
  if (error instanceof PeerUnreachableError) return Code.Unavailable;
  if (error instanceof StoreError) return Code.Unavailable;
  // conflicts are retried below; one that still surfaces means heavy contention: retryable
  if (error instanceof JournalConflictError) return Code.Aborted;
  return Code.Internal;
}

/** Whether a failure is the caller's or the handler's doing (logged at lower severity). */
export function isExpectedFailure(error: unknown): boolean {
  return (
    error instanceof InvalidArgumentError ||
    error instanceof NotFoundError ||
    error instanceof MessageTooLargeError ||
    // counted by cos_commands_refused_total; a log line per refused call would add to the load
    error instanceof OverloadedError ||
    error instanceof HandlerFailedError ||
    (error instanceof ConnectError && error.code !== Code.Internal && error.code !== Code.Unknown)
  );
}

/** The logger `logCallFailure` needs (pino's shape). */
export interface CallFailureLogger {
  debug(fields: object, message: string): void;
  error(fields: object, message: string): void;
}

/**
 * An `onError` for the services: failures that are the caller's or the handler's doing are
 * logged at debug, anything else (a COS fault) at error.
 */
export function logCallFailure(
  logger: CallFailureLogger,
): (method: string, error: unknown, traceContext?: Context | undefined) => void {
  return (method, error, traceContext) => {
    const fields = { err: error, method, ...traceLogFields(traceContext && trace.getSpan(traceContext)) };
    if (isExpectedFailure(error)) logger.debug(fields, 'call failed');
    else logger.error(fields, 'call failed');
  };
}

import { Code, ConnectError } from '@connectrpc/connect';
import {
  DeadlineExceededError,
  HandlerFailedError,
  HandlerUnavailableError,
  MessageTooLargeError,
  type CosError,
} from '@chiefofstate/core';
import { decodeBinaryHeaderValue, decodeRpcStatus, type RawStatusDetail } from './rpc-status.js';

/** What the translation needs to know about the call that failed. */
export interface FailedCall {
  /** e.g. `write handler localhost:50051 HandleCommand`, for messages (the log) */
  readonly description: string;
  /**
   * e.g. `write handler`: what the caller may be told (publicMessage) names the callee only
   * so, never by its address
   */
  readonly role: string;
  /** the deadline this call was given, in ms */
  readonly timeoutMs: number;
  /** performance.now() when the call started */
  readonly startedAt: number;
  /** the caller's signal; when it aborted, its reason is what the caller gets */
  readonly signal: AbortSignal | undefined;
}

/**
 * Turns whatever a handler call threw into a COS error:
 * - the handler answered with a gRPC status (grpc-status present in headers or trailers):
 *   HandlerFailedError with the code, message and google.rpc.Status details exactly as sent;
 * - the call ran out of time: DeadlineExceededError;
 * - a message over the size limit: MessageTooLargeError;
 * - the caller aborted: the caller's abort reason, unchanged;
 * - anything else (connection refused, reset, not a gRPC server): HandlerUnavailableError.
 */
export function translateHandlerError(error: unknown, call: FailedCall): unknown {
  if (call.signal?.aborted) return call.signal.reason ?? error;
  const connectError = ConnectError.from(error);
  if (
    connectError.code === Code.DeadlineExceeded &&
    performance.now() - call.startedAt >= call.timeoutMs - 1
  ) {
    return new DeadlineExceededError(`${call.description} did not answer within ${call.timeoutMs} ms`, {
      cause: error,
      publicMessage: `${call.role} did not answer within ${call.timeoutMs} ms`,
    });
  }
  const grpcStatus = connectError.metadata.get('grpc-status');
  if (grpcStatus !== null) return handlerFailed(connectError, grpcStatus);
  return transportFailure(connectError, call);
}

function handlerFailed(error: ConnectError, grpcStatus: string): CosError {
  const metadata = error.metadata;
  let code = Number.parseInt(grpcStatus, 10);
  if (!Number.isInteger(code)) code = error.code;
  let message = error.rawMessage;
  const rawMessage = metadata.get('grpc-message');
  if (rawMessage !== null) message = percentDecode(rawMessage);
  let details: RawStatusDetail[] = [];
  const detailsBin = metadata.get('grpc-status-details-bin');
  if (detailsBin !== null) {
    try {
      details = decodeRpcStatus(decodeBinaryHeaderValue(detailsBin)).details;
    } catch {
      // A malformed details trailer must not hide the handler's code and message.
      details = [];
    }
  }
  return new HandlerFailedError(code, message, details, { cause: error });
}

function transportFailure(error: ConnectError, call: FailedCall): CosError {
  if (error.code === Code.ResourceExhausted) {
    return new MessageTooLargeError(`${call.description}: ${error.rawMessage}`, {
      cause: error,
      publicMessage: `a message to or from the ${call.role} is larger than the limit`,
    });
  }
  if (error.code === Code.DeadlineExceeded) {
    return new DeadlineExceededError(`${call.description}: ${error.rawMessage}`, {
      cause: error,
      publicMessage: `${call.role} did not answer in time`,
    });
  }
  // the address and the driver's words stay in the message, for the log
  return new HandlerUnavailableError(`${call.description} unavailable: ${rootMessage(error)}`, {
    cause: error,
    publicMessage: `${call.role} unavailable`,
  });
}

function percentDecode(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

/** The innermost cause's message (e.g. `connect ECONNREFUSED 127.0.0.1:50051`). */
export function rootMessage(error: ConnectError): string {
  let reason: unknown = error;
  for (let depth = 0; depth < 8 && reason instanceof Error && reason.cause instanceof Error; depth++) {
    reason = reason.cause;
  }
  return reason instanceof Error && reason !== error ? reason.message : error.rawMessage;
}

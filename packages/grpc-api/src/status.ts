import { randomBytes } from 'node:crypto';
import { trace, type Context } from '@opentelemetry/api';
import { Code, ConnectError, encodeBinaryHeader } from '@connectrpc/connect';
import {
  CircuitOpenError,
  CommitOutcomeUnknownError,
  CosError,
  DeadlineExceededError,
  FencedError,
  HandlerFailedError,
  HandlerUnavailableError,
  InternalError,
  InvalidArgumentError,
  JournalConflictError,
  MessageTooLargeError,
  NotFoundError,
  OverloadedError,
  PeerRefusedError,
  PeerUnreachableError,
  ShuttingDownError,
  StoreError,
  UnauthenticatedError,
  PermissionDeniedError,
  traceLogFields,
  type Logger,
} from '@chiefofstate/core';
import { REFUSED_TRAILER, encodeRpcStatus } from '@chiefofstate/protocol';
import { retrySafetyCode, retrySafetyErrorInfo } from './retry-errors.js';

/**
 * The one place where COS failures become gRPC statuses. Everything below the edge throws
 * CosError subclasses; callers see a status code and a message they can act on: the error's
 * publicMessage, never its message, which may name database hosts, handler or peer addresses,
 * or a driver's words. A fault of COS itself (InternalError, or anything that is not a COS
 * error) tells the caller only an id to look up in the log (`errorIdOf`, logged by
 * logCallFailure).
 */
export function toConnectError(error: unknown): ConnectError {
  if (error instanceof ConnectError) return error;
  if (error instanceof HandlerFailedError) {
    // The user's handler spoke: its code, message and rich details reach the caller unchanged.
    const connectError = new ConnectError(error.statusMessage, error.statusCode as Code, undefined, undefined, error);
    if (error.details.every((detail) => detail.typeUrl.startsWith(DEFAULT_TYPE_URL_PREFIX))) {
      // Connect writes these back with the same prefix, in every protocol (the Connect protocol's
      // JSON names the type without it).
      for (const detail of error.details) {
        connectError.details.push({
          type: detail.typeUrl.slice(DEFAULT_TYPE_URL_PREFIX.length),
          value: detail.value,
          debug: undefined,
        });
      }
    } else {
      // Connect would re-prefix other type URLs (`example.com/x.v1.Custom`); the status goes
      // out as the handler sent it instead: gRPC and gRPC-Web copy error metadata into the
      // trailers and, with no `details`, leave grpc-status-details-bin as set here.
      connectError.metadata.set(
        STATUS_DETAILS_HEADER,
        encodeBinaryHeader(encodeRpcStatus({ code: error.statusCode, message: error.statusMessage, details: error.details })),
      );
    }
    return connectError;
  }
  if (isUnexpectedFailure(error)) {
    return new ConnectError(internalErrorMessage(errorIdOf(error)), Code.Internal, undefined, undefined, error);
  }
  const cosError = error as CosError;
  const connectError = new ConnectError(cosError.publicMessage, codeOf(cosError), refusedTrailer(cosError), undefined, error);
  // retry-safe commands: google.rpc.ErrorInfo a client can act on
  const info = retrySafetyErrorInfo(cosError);
  if (info !== undefined) connectError.details.push(info);
  return connectError;
}

/** What a caller is told about a fault of COS: only where to look. */
export function internalErrorMessage(errorId: string): string {
  return `internal error; look up error id ${errorId} in the chief-of-state log`;
}

/** A fault of COS itself rather than a refusal or a failure of its surroundings. */
function isUnexpectedFailure(error: unknown): boolean {
  if (error instanceof ConnectError) return false;
  return !(error instanceof CosError) || error instanceof InternalError;
}

const errorIds = new WeakMap<object, string>();

/**
 * The short random id of an unexpected failure, the same for one error object each time it is
 * asked, so the status a caller gets and the log line carrying the detail name the same id.
 */
export function errorIdOf(error: unknown): string {
  if (typeof error !== 'object' || error === null) return newErrorId();
  let id = errorIds.get(error);
  if (id === undefined) {
    id = newErrorId();
    errorIds.set(error, id);
  }
  return id;
}

function newErrorId(): string {
  return randomBytes(6).toString('hex');
}

/**
 * A service's failed call: tells `report` (the log) and answers the caller, with the same error
 * id when it is a fault of COS. A thrown non-object becomes an InternalError first, so that both
 * see one object (and one id).
 */
export function failCall(thrown: unknown, report: ((error: unknown) => void) | undefined): ConnectError {
  const error = typeof thrown === 'object' && thrown !== null ? thrown : new InternalError(`thrown: ${String(thrown)}`);
  report?.(error);
  return toConnectError(error);
}

const DEFAULT_TYPE_URL_PREFIX = 'type.googleapis.com/';
const STATUS_DETAILS_HEADER = 'grpc-status-details-bin';

/**
 * Marks the refusals that wrote nothing and belong to another replica, for a forwarding one. An
 * UnauthenticatedError is one too: a forwarded call skips the caller check, so a replica is told
 * UNAUTHENTICATED only when this one does not trust it (a wrong proof, a certificate not in
 * COS_CLUSTER_PEER_NAMES); its caller, whose credential was fine, must not be told so.
 */
function refusedTrailer(error: CosError): Record<string, string> | undefined {
  const refused =
    error instanceof FencedError ||
    error instanceof ShuttingDownError ||
    error instanceof PeerUnreachableError ||
    error instanceof PeerRefusedError ||
    error instanceof UnauthenticatedError;
  return refused ? { [REFUSED_TRAILER]: error.code } : undefined;
}

function codeOf(error: CosError): Code {
  if (error instanceof InvalidArgumentError) return Code.InvalidArgument;
  if (error instanceof NotFoundError) return Code.NotFound;
  if (error instanceof MessageTooLargeError) return Code.ResourceExhausted;
  // nothing was done: retry later, with backoff
  if (error instanceof OverloadedError) return Code.ResourceExhausted;
  if (error instanceof DeadlineExceededError) return Code.DeadlineExceeded;
  if (error instanceof HandlerUnavailableError) return Code.Unavailable;
  // refused at once, nothing sent: retry later
  if (error instanceof CircuitOpenError) return Code.Unavailable;
  if (error instanceof ShuttingDownError) return Code.Unavailable;
  if (error instanceof PeerUnreachableError) return Code.Unavailable;
  if (error instanceof PeerRefusedError) return Code.Unavailable;
  if (error instanceof StoreError) return Code.Unavailable;
  // not UNAVAILABLE, which invites a blind retry: the events may be persisted already
  if (error instanceof CommitOutcomeUnknownError) return Code.Unknown;
  if (error instanceof FencedError) return Code.Unavailable;
  if (error instanceof UnauthenticatedError) return Code.Unauthenticated;
  if (error instanceof PermissionDeniedError) return Code.PermissionDenied;
  // conflicts are retried below; one that still surfaces means heavy contention: retryable
  if (error instanceof JournalConflictError) return Code.Aborted;
  return retrySafetyCode(error) ?? Code.Internal;
}

/**
 * Whether a failure is anything but a fault of COS itself (logged at lower severity): the
 * caller's or the handler's doing, a bound that refused work, or the surroundings failing (the
 * store, the handler or a replica unreachable, a deadline). The surroundings are logged where
 * they are seen, once per change (the store's availability) or at most once a minute (refusals),
 * so an outage does not add a line per call.
 */
export function isExpectedFailure(error: unknown): boolean {
  if (error instanceof ConnectError) return error.code !== Code.Internal && error.code !== Code.Unknown;
  return error instanceof CosError && !(error instanceof InternalError);
}

/**
 * An `onError` for the services: failures that are the caller's or the handler's doing are
 * logged at debug, anything else (a COS fault) at error. A fault of COS carries `errorId`, the id
 * its caller was told to look up.
 */
export function logCallFailure(
  logger: Logger,
): (method: string, error: unknown, traceContext?: Context | undefined) => void {
  return (method, error, traceContext) => {
    const fields = {
      err: error,
      method,
      ...(isUnexpectedFailure(error) ? { errorId: errorIdOf(error) } : {}),
      ...traceLogFields(traceContext && trace.getSpan(traceContext)),
    };
    if (isExpectedFailure(error)) logger.debug(fields, 'call failed');
    else logger.error(fields, 'call failed');
  };
}

/**
 * The HTTP status of a gRPC code on the HTTP/JSON front end (the usual mapping, as grpc-gateway
 * and Google's APIs use it; FAILED_PRECONDITION is 412 as the upstream spec asks). Upstream
 * answered every failure 500; the code, message and details stay in the body either way.
 * (The Connect protocol keeps Connect's own table, which its clients expect.)
 */
export function httpStatusOf(code: Code): number {
  return HTTP_STATUS[code] ?? 500;
}

const HTTP_STATUS: Partial<Record<Code, number>> = {
  [Code.Canceled]: 499,
  [Code.Unknown]: 500,
  [Code.InvalidArgument]: 400,
  [Code.DeadlineExceeded]: 504,
  [Code.NotFound]: 404,
  [Code.AlreadyExists]: 409,
  [Code.PermissionDenied]: 403,
  [Code.ResourceExhausted]: 429,
  [Code.FailedPrecondition]: 412,
  [Code.Aborted]: 409,
  [Code.OutOfRange]: 400,
  [Code.Unimplemented]: 501,
  [Code.Internal]: 500,
  [Code.Unavailable]: 503,
  [Code.DataLoss]: 500,
  [Code.Unauthenticated]: 401,
};

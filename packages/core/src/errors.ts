/**
 * Every failure COS can report has one error class with a stable `code`. The gRPC edge maps
 * these to status codes in one place; nothing below it knows about gRPC.
 */
export abstract class CosError extends Error {
  abstract readonly code: string;
  /**
   * What a caller outside the process may be told. `message` is for the log and may name
   * addresses, database hosts or a driver's words; this never does. Errors of the surroundings
   * (the store, the handlers, the replicas, bugs) default to their class's fixed sentence
   * (`publicDefault`), the others to their message, which their builders keep free of them.
   */
  readonly publicMessage: string;

  /** the fixed client-facing sentence of a class whose messages describe the surroundings */
  static readonly publicDefault: string | undefined = undefined;

  constructor(message: string, options?: CosErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.publicMessage = options?.publicMessage ?? (new.target as typeof CosError).publicDefault ?? message;
  }
}

export interface CosErrorOptions {
  readonly cause?: unknown;
  /** what a caller may be told when the message says more (see CosError.publicMessage) */
  readonly publicMessage?: string;
}

/**
 * What may be said about a failure outside the process (a gRPC status message, a span's status):
 * a CosError's publicMessage; anything else is a fault of COS and says nothing.
 */
export function publicMessageOf(error: unknown): string {
  return error instanceof CosError ? error.publicMessage : 'internal error';
}

/** The caller sent something COS cannot accept (empty entity id, invalid event type, ...). */
export class InvalidArgumentError extends CosError {
  readonly code = 'COS_INVALID_ARGUMENT';
}

/** The thing asked for does not exist (an entity with no events, an unknown read side). */
export class NotFoundError extends CosError {
  readonly code = 'COS_NOT_FOUND';
}

/** A message larger than the configured limit. */
export class MessageTooLargeError extends CosError {
  readonly code = 'COS_MESSAGE_TOO_LARGE';
}

/**
 * A bound on queued or in-flight work was reached (an entity's mailbox, the commands in flight
 * in the process, the journal's append queue): refused at once, nothing was done.
 */
export class OverloadedError extends CosError {
  readonly code = 'COS_OVERLOADED';
}

/** Another writer persisted the revision this append expected to write. */
export class JournalConflictError extends CosError {
  readonly code = 'COS_JOURNAL_CONFLICT';

  constructor(
    readonly entityId: string,
    readonly expectedRevision: bigint,
    options?: CosErrorOptions,
  ) {
    super(`entity ${JSON.stringify(entityId)} has moved past revision ${expectedRevision}`, options);
  }
}

/**
 * The store (PostgreSQL) failed or could not be reached, and nothing was written: retrying is
 * safe.
 */
export class StoreError extends CosError {
  readonly code = 'COS_STORE_FAILED';
  static override readonly publicDefault = 'the store failed or could not be reached; nothing was written';
}

/**
 * A commit was sent and the connection was lost or timed out before its answer: the events may
 * or may not be persisted. The caller must read the entity's state before deciding to retry.
 */
export class CommitOutcomeUnknownError extends CosError {
  readonly code = 'COS_COMMIT_OUTCOME_UNKNOWN';
  static override readonly publicDefault =
    "the events were sent to the store, then the connection failed before its answer: they may or may not be persisted; read the entity's state before retrying";
}

/**
 * The user's handler answered with an error status. Its gRPC code, message and raw rich
 * details (`grpc-status-details-bin` payload) are carried unchanged to the caller.
 */
export class HandlerFailedError extends CosError {
  readonly code = 'COS_HANDLER_FAILED';

  constructor(
    /** numeric gRPC status code as the handler sent it */
    readonly statusCode: number,
    /** the handler's status message, verbatim */
    readonly statusMessage: string,
    /** the handler's google.rpc.Status details, as Any messages, verbatim */
    readonly details: readonly { readonly typeUrl: string; readonly value: Uint8Array }[] = [],
    options?: CosErrorOptions,
  ) {
    super(statusMessage, options);
  }
}

/** The user's handler could not be reached. */
export class HandlerUnavailableError extends CosError {
  readonly code = 'COS_HANDLER_UNAVAILABLE';
  static override readonly publicDefault = 'handler unavailable';
}

/**
 * A circuit breaker around a handler is open (its recent calls failed in a row), so the call was
 * refused at once without being sent: nothing was done, retry after `retryAfterMs`.
 */
export class CircuitOpenError extends CosError {
  readonly code = 'COS_CIRCUIT_OPEN';
  static override readonly publicDefault = 'handler unavailable (circuit breaker open)';

  constructor(
    message: string,
    /** when the breaker lets a trial call through, ms from now (0: a trial call is in flight) */
    readonly retryAfterMs: number,
    options?: CosErrorOptions,
  ) {
    super(message, options);
  }
}

/**
 * The replica that owns an entity could not be reached, and the request was never sent to it
 * (the connection was refused or could not be opened), so it is safe to handle it elsewhere.
 */
export class PeerUnreachableError extends CosError {
  readonly code = 'COS_PEER_UNREACHABLE';
  static override readonly publicDefault = 'the replica owning the entity could not be reached; nothing was sent to it';
}

/**
 * The replica a call was forwarded to refused it having done nothing (it gave the shard up, or is
 * stopping, since it was asked), so it is safe to send it to the shard's next owner.
 */
export class PeerRefusedError extends CosError {
  readonly code = 'COS_PEER_REFUSED';
  static override readonly publicDefault = 'the replica owning the entity refused the call; nothing was done';
}

/**
 * The caller did not prove who it is: no credential, an unknown bearer token, no verified client
 * certificate, or a call marked as forwarded by a replica without a valid proof. Nothing was done.
 */
export class UnauthenticatedError extends CosError {
  readonly code = 'COS_UNAUTHENTICATED';
}

/**
 * The caller proved who it is, but that credential does not open this service (an API token on
 * ReadSideManagerService, a client certificate whose names are not listed). Nothing was done.
 */
export class PermissionDeniedError extends CosError {
  readonly code = 'COS_PERMISSION_DENIED';
}

/**
 * This replica may not write the entity's shard now: another replica took it over (its lease
 * epoch fenced this one's appends) or the shard's owner is unknown or unreachable. Nothing was
 * written, so retrying is safe.
 */
export class FencedError extends CosError {
  readonly code = 'COS_FENCED';
}

/** A deadline passed: a handler call, or the caller's own deadline for the whole command. */
export class DeadlineExceededError extends CosError {
  readonly code = 'COS_DEADLINE_EXCEEDED';
}

// ---- retry-safe commands (x-cos-expected-revision, x-cos-idempotency-key) ----

/**
 * The command asked to run only at a revision (x-cos-expected-revision) and the entity was at
 * another when the command's turn came: nothing was done, the handler was not called.
 */
export class RevisionMismatchError extends CosError {
  readonly code = 'COS_REVISION_MISMATCH';

  constructor(
    readonly expected: bigint,
    readonly actual: bigint,
    message = `the entity is at revision ${actual}, not at the expected revision ${expected}: the command was not run`,
  ) {
    super(message);
  }
}

/**
 * An idempotency key (x-cos-idempotency-key) already used on the entity within the retention
 * window came with a different command body: refused, nothing done, rather than answered with
 * another command's outcome.
 */
export class IdempotencyKeyReusedError extends CosError {
  readonly code = 'COS_IDEMPOTENCY_KEY_REUSED';
}

/** The process is shutting down and takes no new work. */
export class ShuttingDownError extends CosError {
  readonly code = 'COS_SHUTTING_DOWN';
}

/** The configuration is invalid; `problems` lists every one, each naming the variable. */
export class ConfigError extends CosError {
  readonly code = 'COS_CONFIG_INVALID';

  constructor(readonly problems: readonly string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
  }
}

/** Something that must never happen did; a bug in COS. */
export class InternalError extends CosError {
  readonly code = 'COS_INTERNAL';
  static override readonly publicDefault = 'internal error';
}

export function isCosError(error: unknown): error is CosError {
  return error instanceof CosError;
}

import type { Context } from '@opentelemetry/api';
import type { Any } from '@bufbuild/protobuf/wkt';
import type { Header, MetaData } from '@chiefofstate/protocol';

/** What a call's work is bound to: the caller's cancellation, deadline and trace. */
export interface CallScope {
  signal?: AbortSignal;
  /** epoch ms */
  deadline?: number;
  /**
   * The caller's OpenTelemetry context (the gRPC edge passes its server span's); the work's
   * spans are its children. Default: the active context, which needs a context manager.
   */
  traceContext?: Context;
}

/**
 * What a call COS makes (to a write or read side handler, to another replica) carries of the
 * work it serves: request metadata, cancellation, the time left, and the trace it belongs to.
 */
export interface OutgoingCallOptions {
  /** request metadata: propagated headers, traceparent / tracestate */
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /** the caller's remaining time in ms */
  timeoutMs?: number;
  /** the OpenTelemetry context the call's client span is a child of */
  traceContext?: Context | undefined;
}

/**
 * A ProcessCommand to run, as the entity runtime takes it. A command not yet persisted is
 * abandoned when its caller cancels, and none of its events is appended once its deadline has
 * passed.
 */
export interface CommandRequest extends CallScope {
  entityId: string;
  command: Any | undefined;
  /** request metadata for the handler: configured propagated headers, traceparent, tracestate */
  propagatedHeaders?: Record<string, string>;
  /** stored in each event's MetaData.headers */
  persistedHeaders?: Header[];
  /**
   * x-cos-idempotency-key (at most 128 bytes): the first command with it on the entity runs;
   * later ones within the retention window get its outcome without running again
   */
  idempotencyKey?: string;
  /** x-cos-expected-revision: run only if the entity is at this revision when the command's turn comes */
  expectedRevision?: bigint;
}

/** The mark of a call another replica forwarded, checked by the router (which knows the cluster secret). */
export interface ForwardingMark {
  /** the address of the replica that forwarded this call (x-cos-forwarded-by), as claimed */
  forwardedBy?: string;
  /** the forwarding mark's proof (x-cos-forwarded-proof): without a valid one the call is refused */
  forwardProof?: string;
}

/** A ProcessCommand as the gRPC edge hands it over to the router: a caller's, or one another replica forwarded. */
export interface IncomingCommandRequest extends CommandRequest, ForwardingMark {}

/** Options of a GetState as the gRPC edge hands it over to the router. */
export interface GetStateOptions extends CallScope, ForwardingMark {}

/** An entity's state and the meta of its latest event: the reply to both calls. Shared with the cache: do not mutate. */
export interface EntityState {
  readonly state: Any;
  readonly meta: MetaData;
}

import { Code } from '@connectrpc/connect';
import { IdempotencyKeyReusedError, RevisionMismatchError, type CosError } from '@chiefofstate/core';
import {
  COS_ERROR_DOMAIN,
  ERROR_INFO_TYPE_URL,
  IDEMPOTENCY_KEY_REUSED_REASON,
  REVISION_MISMATCH_REASON,
  encodeErrorInfo,
} from '@chiefofstate/protocol';

/** The statuses of the retry-safety failures (x-cos-expected-revision, x-cos-idempotency-key). */
export function retrySafetyCode(error: CosError): Code | undefined {
  // the entity is not where the caller expected: read it and decide (not retryable as is)
  if (error instanceof RevisionMismatchError) return Code.FailedPrecondition;
  if (error instanceof IdempotencyKeyReusedError) return Code.InvalidArgument;
  return undefined;
}

/**
 * Their google.rpc.ErrorInfo detail (domain COS_ERROR_DOMAIN): REVISION_MISMATCH with metadata
 * `expected` and `actual`, or IDEMPOTENCY_KEY_REUSED. As a raw detail, so Connect writes it
 * with its type URL and grpc-status-details-bin carries it to stock clients.
 */
export function retrySafetyErrorInfo(error: CosError): { type: string; value: Uint8Array; debug: undefined } | undefined {
  let value: Uint8Array;
  if (error instanceof RevisionMismatchError) {
    value = encodeErrorInfo({
      reason: REVISION_MISMATCH_REASON,
      domain: COS_ERROR_DOMAIN,
      metadata: { expected: error.expected.toString(), actual: error.actual.toString() },
    });
  } else if (error instanceof IdempotencyKeyReusedError) {
    value = encodeErrorInfo({ reason: IDEMPOTENCY_KEY_REUSED_REASON, domain: COS_ERROR_DOMAIN, metadata: {} });
  } else {
    return undefined;
  }
  return { type: ERROR_INFO_TYPE_URL.slice(ERROR_INFO_TYPE_URL.indexOf('/') + 1), value, debug: undefined };
}

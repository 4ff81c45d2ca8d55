import { InvalidArgumentError } from '@chiefofstate/core';
import { EXPECTED_REVISION_HEADER, IDEMPOTENCY_KEY_HEADER, MAX_IDEMPOTENCY_KEY_BYTES } from '@chiefofstate/protocol';

/** What a ProcessCommand's retry-safety headers ask for (see @chiefofstate/entity). */
export interface RetryHeaders {
  /** x-cos-idempotency-key */
  idempotencyKey?: string;
  /** x-cos-expected-revision */
  expectedRevision?: bigint;
}

const MAX_REVISION = 2n ** 63n - 1n;
const DECIMAL = /^[0-9]{1,19}$/;

/**
 * The idempotency key and expected revision of a call, checked: InvalidArgumentError for a key
 * that is empty or over MAX_IDEMPOTENCY_KEY_BYTES bytes, or a revision that is not a decimal
 * number from 0 to 2^63-1. Absent headers ask for nothing.
 */
export function retryHeaders(incoming: Headers): RetryHeaders {
  const out: RetryHeaders = {};
  const key = incoming.get(IDEMPOTENCY_KEY_HEADER);
  if (key !== null) {
    const bytes = Buffer.byteLength(key);
    if (bytes === 0 || bytes > MAX_IDEMPOTENCY_KEY_BYTES) {
      throw new InvalidArgumentError(`${IDEMPOTENCY_KEY_HEADER} must be 1 to ${MAX_IDEMPOTENCY_KEY_BYTES} bytes long, got ${bytes}`);
    }
    out.idempotencyKey = key;
  }
  const revision = incoming.get(EXPECTED_REVISION_HEADER);
  if (revision !== null) {
    const value = revision.trim();
    if (!DECIMAL.test(value) || BigInt(value) > MAX_REVISION) {
      throw new InvalidArgumentError(
        `${EXPECTED_REVISION_HEADER} must be a revision, a decimal number from 0 to ${MAX_REVISION}; got ${JSON.stringify(revision.slice(0, 40))}`,
      );
    }
    out.expectedRevision = BigInt(value);
  }
  return out;
}

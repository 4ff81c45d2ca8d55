import { Code } from '@connectrpc/connect';
import { IdempotencyKeyReusedError, InvalidArgumentError, RevisionMismatchError, silentLogger } from '@chiefofstate/core';
import { decodeErrorInfo } from '@chiefofstate/protocol';
import { describe, expect, it } from 'vitest';
import { retryHeaders } from './retry-headers.js';
import { logCallFailure, toConnectError } from './status.js';

describe('retryHeaders', () => {
  it('reads the idempotency key and the expected revision; absent ones ask for nothing', () => {
    expect(retryHeaders(new Headers())).toEqual({});
    expect(
      retryHeaders(new Headers({ 'x-cos-idempotency-key': 'deposit-7f3a', 'x-cos-expected-revision': '42' })),
    ).toEqual({ idempotencyKey: 'deposit-7f3a', expectedRevision: 42n });
    expect(retryHeaders(new Headers({ 'x-cos-expected-revision': '0' }))).toEqual({ expectedRevision: 0n });
    expect(retryHeaders(new Headers({ 'x-cos-idempotency-key': 'k'.repeat(128) })).idempotencyKey).toHaveLength(128);
    expect(retryHeaders(new Headers({ 'x-cos-expected-revision': '9223372036854775807' }))).toEqual({
      expectedRevision: 9223372036854775807n,
    });
  });

  it('refuses an empty or over-long key and a revision that is not a decimal number from 0 to 2^63-1 (INVALID_ARGUMENT)', () => {
    const bad: Record<string, string>[] = [
      { 'x-cos-idempotency-key': '' },
      { 'x-cos-idempotency-key': 'k'.repeat(129) },
      { 'x-cos-expected-revision': '-1' },
      { 'x-cos-expected-revision': '1.5' },
      { 'x-cos-expected-revision': '0x10' },
      { 'x-cos-expected-revision': 'seven' },
      { 'x-cos-expected-revision': '' },
      { 'x-cos-expected-revision': '9223372036854775808' },
      { 'x-cos-expected-revision': '1'.repeat(30) },
    ];
    for (const headers of bad) {
      expect(() => retryHeaders(new Headers(headers)), JSON.stringify(headers)).toThrow(InvalidArgumentError);
      let code: Code | undefined;
      try {
        retryHeaders(new Headers(headers));
      } catch (error) {
        code = toConnectError(error).code;
      }
      expect(code).toBe(Code.InvalidArgument);
    }
  });
});

describe('toConnectError for retry-safety failures', () => {
  it('answers a revision mismatch with FAILED_PRECONDITION and an ErrorInfo (REVISION_MISMATCH, expected, actual)', () => {
    const error = toConnectError(new RevisionMismatchError(3n, 5n));
    expect(error.code).toBe(Code.FailedPrecondition);
    expect(error.rawMessage).toContain('revision 5');
    expect(error.details).toHaveLength(1);
    const detail = error.details[0] as { type: string; value: Uint8Array };
    expect(detail.type).toBe('google.rpc.ErrorInfo');
    expect(decodeErrorInfo(detail.value)).toEqual({
      reason: 'REVISION_MISMATCH',
      domain: 'chiefofstate',
      metadata: { expected: '3', actual: '5' },
    });
  });

  it('answers a reused key with INVALID_ARGUMENT and an ErrorInfo (IDEMPOTENCY_KEY_REUSED)', () => {
    const error = toConnectError(new IdempotencyKeyReusedError('key k used with another command'));
    expect(error.code).toBe(Code.InvalidArgument);
    expect(decodeErrorInfo((error.details[0] as { value: Uint8Array }).value).reason).toBe('IDEMPOTENCY_KEY_REUSED');
  });

  it('logs both at debug: the caller asked for them', () => {
    const lines: string[] = [];
    const log = logCallFailure({ ...silentLogger, debug: () => lines.push('debug'), error: () => lines.push('error') });
    log('ProcessCommand', new RevisionMismatchError(0n, 1n));
    log('ProcessCommand', new IdempotencyKeyReusedError('reused'));
    expect(lines).toEqual(['debug', 'debug']);
  });
});

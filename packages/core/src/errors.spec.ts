import { describe, expect, it } from 'vitest';
import {
  CommitOutcomeUnknownError,
  DeadlineExceededError,
  HandlerUnavailableError,
  InternalError,
  InvalidArgumentError,
  PeerRefusedError,
  PeerUnreachableError,
  StoreError,
  publicMessageOf,
} from './errors.js';

const DETAIL = 'connect ECONNREFUSED 10.1.2.3:5432 (postgres://cos:hunter2@db.internal/cos)';

describe('publicMessage', () => {
  it('is a fixed sentence for the errors of the surroundings, whatever their message says', () => {
    for (const error of [
      new StoreError(DETAIL),
      new CommitOutcomeUnknownError(DETAIL),
      new HandlerUnavailableError(DETAIL),
      new PeerUnreachableError(DETAIL),
      new PeerRefusedError(DETAIL),
      new InternalError(DETAIL),
    ]) {
      expect(error.message).toBe(DETAIL);
      expect(error.publicMessage).not.toContain('10.1.2.3');
      expect(error.publicMessage).not.toContain('hunter2');
      expect(error.publicMessage).not.toBe('');
    }
    expect(new HandlerUnavailableError(DETAIL).publicMessage).toBe('handler unavailable');
    expect(new InternalError(DETAIL).publicMessage).toBe('internal error');
  });

  it("is the message of the caller's errors, or what the builder says", () => {
    expect(new InvalidArgumentError('empty entity ID').publicMessage).toBe('empty entity ID');
    const timedOut = new DeadlineExceededError('write handler 10.1.2.3:50051 HandleCommand did not answer', {
      publicMessage: 'write handler did not answer',
    });
    expect(timedOut.publicMessage).toBe('write handler did not answer');
    expect(new HandlerUnavailableError(DETAIL, { publicMessage: 'write handler unavailable' }).publicMessage).toBe(
      'write handler unavailable',
    );
  });

  it('keeps the cause for the log', () => {
    const cause = new Error(DETAIL);
    expect(new StoreError('journal failed', { cause }).cause).toBe(cause);
  });

  it('of anything but a CosError says nothing', () => {
    expect(publicMessageOf(new Error(DETAIL))).toBe('internal error');
    expect(publicMessageOf(DETAIL)).toBe('internal error');
    expect(publicMessageOf(new StoreError(DETAIL))).toBe(new StoreError('x').publicMessage);
  });
});

import { HandlerFailedError, InternalError, InvalidArgumentError } from '@chiefofstate/core';
import { describe, expect, it } from 'vitest';
import { logCallFailure } from './status.js';

describe('logCallFailure', () => {
  it("logs the caller's and the handler's failures at debug, COS faults at error", () => {
    const lines: Array<[string, string]> = [];
    const log = logCallFailure({
      debug: (fields, message) => lines.push(['debug', `${message} ${(fields as { method: string }).method}`]),
      error: (fields, message) => lines.push(['error', `${message} ${(fields as { method: string }).method}`]),
    });
    log('ProcessCommand', new InvalidArgumentError('empty entity ID'));
    log('ProcessCommand', new HandlerFailedError(9, 'insufficient funds'));
    log('GetState', new InternalError('bug'));
    log('GetState', new Error('unexpected'));
    expect(lines).toEqual([
      ['debug', 'call failed ProcessCommand'],
      ['debug', 'call failed ProcessCommand'],
      ['error', 'call failed GetState'],
      ['error', 'call failed GetState'],
    ]);
  });
});

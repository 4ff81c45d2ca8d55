import { Code } from '@connectrpc/connect';
import { HandlerFailedError, InternalError, InvalidArgumentError, MessageTooLargeError, OverloadedError } from '@chiefofstate/core';
import { describe, expect, it } from 'vitest';
import { logCallFailure, toConnectError } from './status.js';

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

describe('toConnectError', () => {
  it('answers overload and a too large message with RESOURCE_EXHAUSTED, logged at debug', () => {
    expect(toConnectError(new OverloadedError('entity mailbox full')).code).toBe(Code.ResourceExhausted);
    expect(toConnectError(new MessageTooLargeError('state too large')).code).toBe(Code.ResourceExhausted);
    const lines: string[] = [];
    const log = logCallFailure({ debug: () => lines.push('debug'), error: () => lines.push('error') });
    log('ProcessCommand', new OverloadedError('entity mailbox full'));
    expect(lines).toEqual(['debug']);
  });
});

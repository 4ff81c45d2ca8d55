import { Code } from '@connectrpc/connect';
import {
  CircuitOpenError,
  CommitOutcomeUnknownError,
  DeadlineExceededError,
  FencedError,
  HandlerFailedError,
  HandlerUnavailableError,
  InternalError,
  InvalidArgumentError,
  MessageTooLargeError,
  OverloadedError,
  PeerRefusedError,
  PeerUnreachableError,
  ShuttingDownError,
  StoreError,
  UnauthenticatedError,
  PermissionDeniedError,
  silentLogger,
} from '@chiefofstate/core';
import { REFUSED_TRAILER } from '@chiefofstate/protocol';
import { decodeRpcStatus } from '@chiefofstate/testing';
import { describe, expect, it } from 'vitest';
import { errorIdOf, failCall, internalErrorMessage, logCallFailure, toConnectError } from './status.js';

describe('logCallFailure', () => {
  it("logs the caller's, the handler's and the surroundings' failures at debug, COS faults at error", () => {
    const lines: Array<[string, string]> = [];
    const log = logCallFailure({
      ...silentLogger,
      debug: (fields, message) => lines.push(['debug', `${message} ${(fields as { method: string }).method}`]),
      error: (fields, message) => lines.push(['error', `${message} ${(fields as { method: string }).method}`]),
    });
    log('ProcessCommand', new InvalidArgumentError('empty entity ID'));
    log('ProcessCommand', new HandlerFailedError(9, 'insufficient funds'));
    log('ProcessCommand', new StoreError('database unreachable'));
    log('ProcessCommand', new CommitOutcomeUnknownError('connection lost after the append was sent'));
    log('ProcessCommand', new DeadlineExceededError('deadline exceeded'));
    log('GetState', new InternalError('bug'));
    log('GetState', new Error('unexpected'));
    expect(lines).toEqual([
      ['debug', 'call failed ProcessCommand'],
      ['debug', 'call failed ProcessCommand'],
      ['debug', 'call failed ProcessCommand'],
      ['debug', 'call failed ProcessCommand'],
      ['debug', 'call failed ProcessCommand'],
      ['error', 'call failed GetState'],
      ['error', 'call failed GetState'],
    ]);
  });
});

describe('toConnectError for a handler failure', () => {
  const value = new Uint8Array([10, 1, 107]);

  it('keeps details of the standard type URL prefix as Connect details (every protocol carries them)', () => {
    const error = toConnectError(
      new HandlerFailedError(9, 'insufficient funds', [{ typeUrl: 'type.googleapis.com/bank.v1.Why', value }]),
    );
    expect(error.code).toBe(Code.FailedPrecondition);
    expect(error.details).toEqual([{ type: 'bank.v1.Why', value, debug: undefined }]);
    expect(error.metadata.get('grpc-status-details-bin')).toBeNull();
  });

  it('sends details of any other type URL verbatim, as grpc-status-details-bin', () => {
    const details = [
      { typeUrl: 'example.com/custom/x.v1.Custom', value },
      { typeUrl: 'type.googleapis.com/bank.v1.Why', value: new Uint8Array() },
    ];
    const error = toConnectError(new HandlerFailedError(9, 'insufficient funds', details));
    expect(error.details).toEqual([]);
    const status = decodeRpcStatus(Buffer.from(error.metadata.get('grpc-status-details-bin')!, 'base64'));
    expect({ ...status, details: status.details.map((d) => ({ typeUrl: d.typeUrl, value: Uint8Array.from(d.value) })) }).toEqual({
      code: 9,
      message: 'insufficient funds',
      details,
    });
  });
});

describe('toConnectError', () => {
  it('answers overload and a too large message with RESOURCE_EXHAUSTED, logged at debug', () => {
    expect(toConnectError(new OverloadedError('entity mailbox full')).code).toBe(Code.ResourceExhausted);
    expect(toConnectError(new MessageTooLargeError('state too large')).code).toBe(Code.ResourceExhausted);
    const lines: string[] = [];
    const log = logCallFailure({ ...silentLogger, debug: () => lines.push('debug'), error: () => lines.push('error') });
    log('ProcessCommand', new OverloadedError('entity mailbox full'));
    expect(lines).toEqual(['debug']);
  });

  it('marks the refusals that wrote nothing and belong to another replica (UNAVAILABLE) with the refused trailer, no other failure', () => {
    const refusals = [
      new FencedError('its shard is changing owner'),
      new ShuttingDownError('shutting down'),
      new PeerUnreachableError('peer b:9000 ProcessCommand: connect ECONNREFUSED'),
      new PeerRefusedError('peer b:9000 ProcessCommand refused'),
    ];
    for (const refusal of refusals) {
      const error = toConnectError(refusal);
      expect(error.code).toBe(Code.Unavailable);
      expect(error.metadata.get(REFUSED_TRAILER)).toBe(refusal.code);
    }
    const others = [
      new StoreError('database unreachable'),
      new HandlerUnavailableError('write handler unavailable'),
      new CommitOutcomeUnknownError('connection lost after the append was sent'),
      new DeadlineExceededError('deadline exceeded'),
      new HandlerFailedError(14, 'handler says unavailable'),
      new CircuitOpenError('write handler 10.1.2.3:50051: circuit breaker open', 1000),
    ];
    for (const other of others) expect(toConnectError(other).metadata.get(REFUSED_TRAILER)).toBeNull();
  });

  it('answers an open circuit breaker with UNAVAILABLE and its public sentence (the address stays in the log)', () => {
    const error = toConnectError(new CircuitOpenError('write handler 10.1.2.3:50051: circuit breaker open', 1000));
    expect(error.code).toBe(Code.Unavailable);
    expect(error.rawMessage).toBe('handler unavailable (circuit breaker open)');
  });

  it("marks UNAUTHENTICATED too: a forwarding replica's caller must not be told its credential failed", () => {
    const refusal = new UnauthenticatedError('unauthenticated: forwarded call from a certificate not in COS_CLUSTER_PEER_NAMES');
    const error = toConnectError(refusal);
    expect(error.code).toBe(Code.Unauthenticated);
    expect(error.metadata.get(REFUSED_TRAILER)).toBe('COS_UNAUTHENTICATED');
    // a handler's own UNAUTHENTICATED (or PERMISSION_DENIED) reaches the caller as it was
    expect(toConnectError(new HandlerFailedError(16, 'handler says who are you')).metadata.get(REFUSED_TRAILER)).toBeNull();
    expect(toConnectError(new PermissionDeniedError('permission denied')).metadata.get(REFUSED_TRAILER)).toBeNull();
  });
});

describe('a fault of COS', () => {
  const LEAK = 'postgres://cos:hunter2@db.internal:5432/cos at Object.<anonymous> (/app/dist/x.js:1:2)';
  const capture = () => {
    const lines: Array<{ level: string; fields: Record<string, unknown>; message: string }> = [];
    const logger = {
      ...silentLogger,
      debug: (fields: object, message: string) => lines.push({ level: 'debug', fields: fields as Record<string, unknown>, message }),
      error: (fields: object, message: string) => lines.push({ level: 'error', fields: fields as Record<string, unknown>, message }),
    };
    return { lines, log: logCallFailure(logger) };
  };

  it.each([
    ['an InternalError', new InternalError(LEAK)],
    ['an Error', new Error(LEAK)],
    ['a thrown string', LEAK],
  ])('(%s) answers an id to look up, and the log line has that id and the detail', (_, thrown) => {
    const { lines, log } = capture();
    const answer = failCall(thrown, (error) => log('ProcessCommand', error));
    expect(answer.code).toBe(Code.Internal);
    const id = /^internal error; look up error id ([0-9a-f]{12}) in the chief-of-state log$/.exec(answer.rawMessage)?.[1];
    expect(id).toBeDefined();
    expect(answer.rawMessage).not.toContain('hunter2');
    expect(lines).toHaveLength(1);
    expect(lines[0]!.level).toBe('error');
    expect(lines[0]!.fields.errorId).toBe(id);
    expect(String((lines[0]!.fields.err as Error).message)).toContain(LEAK);
  });

  it('gets a new id each time, and the same one for one error', () => {
    const error = new Error('bug');
    expect(errorIdOf(error)).toBe(errorIdOf(error));
    expect(errorIdOf(new Error('bug'))).not.toBe(errorIdOf(error));
    expect(toConnectError(error).rawMessage).toBe(internalErrorMessage(errorIdOf(error)));
  });

  it('is the only failure with an id: the others answer their public message and log no id', () => {
    const { lines, log } = capture();
    const answer = failCall(new StoreError(LEAK), (error) => log('GetState', error));
    expect(answer.rawMessage).toBe('the store failed or could not be reached; nothing was written');
    expect(lines[0]!.fields).not.toHaveProperty('errorId');
    expect((lines[0]!.fields.err as Error).message).toBe(LEAK);
  });
});

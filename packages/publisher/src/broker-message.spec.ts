import { create, toBinary } from '@bufbuild/protobuf';
import { AnySchema, timestampFromMs } from '@bufbuild/protobuf/wkt';
import { describe, expect, it } from 'vitest';
import { EventWrapperSchema, HeaderSchema, MetaDataSchema } from '@chiefofstate/protocol';
import { decodePayload, headerValue, MESSAGE_HEADERS, passesAsIs, toBrokerMessage } from './broker-message.js';

const wrapperBytes = (entityId: string, revision: number, extra: { traceparent?: string; tracestate?: string } = {}) =>
  toBinary(
    EventWrapperSchema,
    create(EventWrapperSchema, {
      event: create(AnySchema, { typeUrl: 'type.googleapis.com/bank.Deposited', value: new Uint8Array([1, 2]) }),
      resultingState: create(AnySchema, { typeUrl: 'type.googleapis.com/bank.Account', value: new Uint8Array([3]) }),
      meta: create(MetaDataSchema, {
        entityId,
        revisionNumber: revision,
        revisionDate: timestampFromMs(1_700_000_000_000),
        headers: [
          create(HeaderSchema, { key: 'x-tenant', value: { case: 'stringValue', value: 'acme' } }),
          create(HeaderSchema, { key: 'x-blob-bin', value: { case: 'bytesValue', value: new Uint8Array([0xff, 0x00]) } }),
        ],
      }),
      ...extra,
    }),
  );

describe('toBrokerMessage', () => {
  it('has the stable id, the key, the headers and the stored EventWrapper bytes', () => {
    const payload = wrapperBytes('acc-1', 7, { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', tracestate: 'k=v' });
    const message = toBrokerMessage({ position: 1234n, shard: 3, payload });
    expect(message.id).toBe('acc-1:7');
    expect(message.key).toBe('acc-1');
    expect(message.payload).toBe(payload);
    expect(message.headers).toEqual({
      [MESSAGE_HEADERS.id]: 'acc-1:7',
      [MESSAGE_HEADERS.entityId]: 'acc-1',
      [MESSAGE_HEADERS.revision]: '7',
      [MESSAGE_HEADERS.shard]: '3',
      [MESSAGE_HEADERS.position]: '1234',
      [MESSAGE_HEADERS.eventType]: 'type.googleapis.com/bank.Deposited',
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      tracestate: 'k=v',
      'cos-header-x-tenant': 'acme',
      'cos-header-x-blob-bin': '/wA=',
    });
    expect(decodePayload(message.payload).meta!.revisionNumber).toBe(7);
  });

  it('leaves the trace headers out when the command had none', () => {
    const message = toBrokerMessage({ position: 1n, shard: 0, payload: wrapperBytes('acc-2', 1) });
    expect(message.headers).not.toHaveProperty('traceparent');
    expect(message.headers).not.toHaveProperty('tracestate');
  });

  it('percent-encodes a non-ASCII entity id in headers; the id and the payload keep it exactly', () => {
    const message = toBrokerMessage({ position: 1n, shard: 0, payload: wrapperBytes('compte-é', 2) });
    expect(message.id).toBe('compte-é:2');
    expect(message.key).toBe('compte-é');
    expect(message.headers[MESSAGE_HEADERS.entityId]).toBe('compte-%C3%A9');
    expect(message.headers[MESSAGE_HEADERS.id]).toBe('compte-%C3%A9:2');
    expect(decodePayload(message.payload).meta!.entityId).toBe('compte-é');
  });
});

describe('headerValue', () => {
  it('keeps printable ASCII and encodes the rest, %, and outer spaces', () => {
    expect(headerValue('plain value-1')).toBe('plain value-1');
    expect(headerValue('50%')).toBe('50%25');
    expect(headerValue(' x ')).toBe('%20x%20');
    expect(headerValue('a\nb')).toBe('a%0Ab');
  });
});

describe('passesAsIs', () => {
  it('agrees with the regular expression, includes and trim it replaced, on edge cases and random strings', () => {
    const reference = (value: string) => /^[\x20-\x7e]*$/.test(value) && !value.includes('%') && value.trim() === value;
    const alphabet = ['a', 'Z', '0', ' ', '%', '~', '\x1f', '\x7f', '\t', '\n', '\u00a0', '\u2028', '\ufeff', 'é', '😀', ':', '/'];
    const cases = ['', ' ', 'a', ' a', 'a ', 'a b', '%', 'a%b', '\u00a0a', 'a\u00a0', 'type.googleapis.com/bank.Deposited', 'account-1:42'];
    // a fixed linear congruential sequence: the same strings every run
    let seed = 12345;
    const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let n = 0; n < 5000; n++) {
      const length = Math.floor(next() * 6);
      cases.push(Array.from({ length }, () => alphabet[Math.floor(next() * alphabet.length)]).join(''));
    }
    for (const value of cases) expect(passesAsIs(value), JSON.stringify(value)).toBe(reference(value));
  });
});

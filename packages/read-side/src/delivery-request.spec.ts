import { create, toBinary } from '@bufbuild/protobuf';
import { AnySchema, timestampFromDate } from '@bufbuild/protobuf/wkt';
import { describe, expect, it } from 'vitest';
import {
  EventWrapperSchema,
  HandleReadSideRequestSchema,
  HeaderSchema,
  MetaDataSchema,
} from '@chiefofstate/protocol';
import { entityIdHeader, toReadSideRequest } from './delivery-request.js';

describe('toReadSideRequest', () => {
  it('gives the same request as building it from the decoded EventWrapper', () => {
    const event = create(AnySchema, { typeUrl: 'type.googleapis.com/bank.Deposited', value: new Uint8Array([1, 2, 3]) });
    const state = create(AnySchema, { typeUrl: 'type.googleapis.com/bank.Account', value: new Uint8Array([9, 8]) });
    const meta = create(MetaDataSchema, {
      entityId: 'açcount-1',
      revisionNumber: 7,
      revisionDate: timestampFromDate(new Date('2026-01-02T03:04:05.678Z')),
      data: { k: create(AnySchema, { typeUrl: 'type.googleapis.com/x.Y', value: new Uint8Array([5]) }) },
      headers: [create(HeaderSchema, { key: 'x-a', value: { case: 'stringValue', value: 'b' } })],
    });
    const payload = toBinary(EventWrapperSchema, create(EventWrapperSchema, { event, resultingState: state, meta }));
    const request = toReadSideRequest(payload, 'accounts');
    const expected = create(HandleReadSideRequestSchema, { event, state, meta, readSideId: 'accounts' });
    expect(toBinary(HandleReadSideRequestSchema, request)).toEqual(toBinary(HandleReadSideRequestSchema, expected));
    expect(request.meta?.entityId).toBe('açcount-1');
    expect(request.state?.typeUrl).toBe('type.googleapis.com/bank.Account');
  });

  it("leaves out the EventWrapper's trace context (fields 10 and 11), which is not the handler's", () => {
    const event = create(AnySchema, { typeUrl: 'type.googleapis.com/bank.Deposited', value: new Uint8Array([1]) });
    const meta = create(MetaDataSchema, { entityId: 'a', revisionNumber: 1 });
    const payload = toBinary(
      EventWrapperSchema,
      create(EventWrapperSchema, { event, meta, traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', tracestate: 'k=v' }),
    );
    const request = toReadSideRequest(payload, 'rs');
    expect(toBinary(HandleReadSideRequestSchema, request)).toEqual(
      toBinary(HandleReadSideRequestSchema, create(HandleReadSideRequestSchema, { event, meta, readSideId: 'rs' })),
    );
  });

  it('refuses a payload that is not an EventWrapper', () => {
    expect(() => toReadSideRequest(new Uint8Array([0xff, 0xff, 0xff]), 'x')).toThrow();
  });
});

describe('entityIdHeader', () => {
  it('leaves printable ASCII ids as they are, % included', () => {
    expect(entityIdHeader('account-1')).toBe('account-1');
    expect(entityIdHeader('a b/c?d=e&f:g~!')).toBe('a b/c?d=e&f:g~!');
    expect(entityIdHeader('100%')).toBe('100%');
  });

  it('percent-encodes the UTF-8 bytes of ids that are not printable ASCII, like grpc-message', () => {
    expect(entityIdHeader('compte-é')).toBe('compte-%C3%A9');
    expect(entityIdHeader('账户 1')).toBe('%E8%B4%A6%E6%88%B7 1');
    expect(entityIdHeader('🙂')).toBe('%F0%9F%99%82');
    expect(entityIdHeader('tab\there')).toBe('tab%09here');
    expect(entityIdHeader('é 100%')).toBe('%C3%A9 100%25');
    for (const id of ['compte-é', '账户 1', '🙂', 'é 100%', 'x\u007f']) {
      expect(decodeURIComponent(entityIdHeader(id))).toBe(id);
      expect(entityIdHeader(id)).toMatch(/^[\x20-\x7e]+$/);
    }
  });

  it('encodes outer spaces, which HTTP/2 field values may not have', () => {
    expect(entityIdHeader(' padded ')).toBe('%20padded%20');
    expect(decodeURIComponent(entityIdHeader('  two  '))).toBe('  two  ');
  });
});

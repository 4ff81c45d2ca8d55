import { create, toBinary } from '@bufbuild/protobuf';
import { AnySchema } from '@bufbuild/protobuf/wkt';
import { EventWrapperSchema, HandleReadSideRequestSchema } from '@chiefofstate/protocol';
import { describe, expect, it } from 'vitest';
import { anyFieldBytes, readSideIdFieldBytes, varintBytes } from './message-size.js';

describe('message sizes', () => {
  it('counts varints at each length boundary', () => {
    for (const [value, bytes] of [[0, 1], [127, 1], [128, 2], [16_383, 2], [16_384, 3], [2_097_151, 3], [2_097_152, 4], [2 ** 28, 5], [2 ** 31 - 1, 5]]) {
      expect(varintBytes(value!)).toBe(bytes);
    }
  });

  it('counts an Any field as protobuf-es writes it, whatever the sizes and characters', () => {
    for (const typeUrl of ['', 'type.googleapis.com/x.v1.State', 'example.com/é/ü.v1.Zustand']) {
      for (const length of [0, 1, 100, 127, 128, 16_370, 16_384, 2_100_000]) {
        const any = create(AnySchema, { typeUrl, value: new Uint8Array(length) });
        expect(anyFieldBytes(any)).toBe(toBinary(EventWrapperSchema, create(EventWrapperSchema, { event: any })).byteLength);
      }
    }
    expect(anyFieldBytes(undefined)).toBe(0);
  });

  it('counts the read_side_id field of the longest id', () => {
    const ids = ['a', 'ü'.repeat(70)];
    const request = create(HandleReadSideRequestSchema, { readSideId: ids[1]! });
    expect(readSideIdFieldBytes(ids)).toBe(toBinary(HandleReadSideRequestSchema, request).byteLength);
  });
});

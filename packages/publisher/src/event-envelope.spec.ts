import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { AnySchema, timestampFromMs } from '@bufbuild/protobuf/wkt';
import { describe, expect, it } from 'vitest';
import { EventWrapperSchema, HeaderSchema, MetaDataSchema } from '@chiefofstate/protocol';
import { envelopeOf, readEnvelope } from './event-envelope.js';

const wrappers = [
  create(EventWrapperSchema, {}),
  create(EventWrapperSchema, { meta: create(MetaDataSchema, { entityId: 'acc-1', revisionNumber: 1 }) }),
  create(EventWrapperSchema, {
    event: create(AnySchema, { typeUrl: 'type.googleapis.com/bank.Deposited', value: new Uint8Array(300).fill(7) }),
    resultingState: create(AnySchema, { typeUrl: 'type.googleapis.com/bank.Account', value: new Uint8Array([3]) }),
    meta: create(MetaDataSchema, {
      entityId: 'compte-é 账户',
      revisionNumber: 4_294_967_295,
      revisionDate: timestampFromMs(1_700_000_000_000),
      data: { k: create(AnySchema, { typeUrl: 'type.googleapis.com/x.Y', value: new Uint8Array([9]) }) },
      headers: [
        create(HeaderSchema, { key: 'x-tenant', value: { case: 'stringValue', value: 'acme' } }),
        create(HeaderSchema, { key: 'x-blob-bin', value: { case: 'bytesValue', value: new Uint8Array([0xff, 0x00]) } }),
        create(HeaderSchema, { key: 'x-empty' }),
        create(HeaderSchema, { key: 'x-tenant', value: { case: 'stringValue', value: 'other' } }),
      ],
    }),
    traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    tracestate: 'k=v',
  }),
];

describe('readEnvelope', () => {
  it.each(wrappers.map((wrapper, i) => [i, wrapper] as const))('reads what decoding the whole wrapper gives (wrapper %i)', (_, wrapper) => {
    const payload = toBinary(EventWrapperSchema, wrapper);
    expect(readEnvelope(payload)).toEqual(envelopeOf(fromBinary(EventWrapperSchema, payload)));
  });

  it('follows protobuf: a field repeated in the bytes keeps its last value, a message given twice is merged, unknown fields are skipped', () => {
    const writer = new BinaryWriter();
    writer.tag(3, 2).bytes(toBinary(MetaDataSchema, create(MetaDataSchema, { entityId: 'first', revisionNumber: 2 })));
    writer.tag(99, 0).uint32(5); // unknown
    writer.tag(10, 2).string('tp-1');
    writer.tag(3, 2).bytes(toBinary(MetaDataSchema, create(MetaDataSchema, { entityId: 'second', headers: [create(HeaderSchema, { key: 'h' })] })));
    writer.tag(10, 2).string('tp-2');
    const payload = writer.finish();
    const envelope = readEnvelope(payload);
    expect(envelope).toEqual(envelopeOf(fromBinary(EventWrapperSchema, payload)));
    expect(envelope).toMatchObject({ entityId: 'second', revision: 2, traceparent: 'tp-2' });
  });

  it('throws on bytes that are not a message', () => {
    expect(() => readEnvelope(new Uint8Array([0x1a, 0x05, 0x01]))).toThrow();
    // meta of 2 bytes holding a string field of 3: overruns the meta
    expect(() => readEnvelope(new Uint8Array([0x1a, 0x02, 0x0a, 0x03, 0x61, 0x62, 0x63]))).toThrow();
  });
});

import { create, toBinary, type JsonObject } from '@bufbuild/protobuf';
import { base64Encode } from '@bufbuild/protobuf/wire';
import {
  AnySchema,
  FileDescriptorProtoSchema,
  FileDescriptorSetSchema,
  FieldDescriptorProto_Label,
  FieldDescriptorProto_Type,
  TimestampSchema,
  type Any,
} from '@bufbuild/protobuf/wkt';
import { describe, expect, it } from 'vitest';
import { messageFromJson, messageToJson, JsonInputError } from './any-json.js';
import { ProcessCommandRequestSchema, ProcessCommandResponseSchema, type ProcessCommandResponse } from './gen/chief_of_state/v1/service_pb.js';
import { MetaDataSchema } from './gen/chief_of_state/v1/common_pb.js';
import { createTypeRegistry } from './type-registry.js';

/** A user's file, as `buf build` would hand it over: test.v1.Account with a nested Any. */
function accountSet(options: { withImports?: boolean } = {}): Uint8Array {
  const file = create(FileDescriptorProtoSchema, {
    name: 'test/v1/account.proto',
    package: 'test.v1',
    syntax: 'proto3',
    dependency: ['google/protobuf/any.proto'],
    messageType: [
      {
        name: 'Account',
        field: [
          { name: 'owner', number: 1, type: FieldDescriptorProto_Type.STRING, label: FieldDescriptorProto_Label.OPTIONAL, jsonName: 'owner' },
          { name: 'balance_cents', number: 2, type: FieldDescriptorProto_Type.INT64, label: FieldDescriptorProto_Label.OPTIONAL, jsonName: 'balanceCents' },
          { name: 'note', number: 3, type: FieldDescriptorProto_Type.MESSAGE, typeName: '.google.protobuf.Any', label: FieldDescriptorProto_Label.OPTIONAL, jsonName: 'note' },
        ],
      },
    ],
  });
  const files = options.withImports ? [createTypeRegistry().getFile('google/protobuf/any.proto')!.proto, file] : [file];
  return toBinary(FileDescriptorSetSchema, create(FileDescriptorSetSchema, { file: files }));
}

const registry = createTypeRegistry([{ name: 'account.binpb', bytes: accountSet() }]);
const bare = createTypeRegistry();
const Account = registry.getMessage('test.v1.Account')!;

function account(owner: string, cents: bigint, note?: Any): Any {
  return create(AnySchema, {
    typeUrl: 'type.googleapis.com/test.v1.Account',
    value: toBinary(Account, create(Account, { owner, balanceCents: cents, ...(note ? { note } : {}) })),
  });
}

function response(state: Any): ProcessCommandResponse {
  return create(ProcessCommandResponseSchema, {
    state,
    meta: create(MetaDataSchema, {
      entityId: 'a-1',
      revisionNumber: 3,
      revisionDate: create(TimestampSchema, { seconds: 1_700_000_000n, nanos: 0 }),
      data: { origin: account('x', 1n) },
      headers: [{ key: 'x-user', value: { case: 'stringValue', value: 'u' } }],
    }),
  });
}

describe('messageToJson / messageFromJson', () => {
  it('renders Anys of known types as proto3 JSON with @type, at every depth, and reads them back', () => {
    const timestamp = create(AnySchema, {
      typeUrl: 'type.googleapis.com/google.protobuf.Timestamp',
      value: toBinary(TimestampSchema, create(TimestampSchema, { seconds: 1n })),
    });
    const message = response(account('alice', 1050n, timestamp));
    const json = messageToJson(ProcessCommandResponseSchema, message, { registry }) as JsonObject;
    expect(json['state']).toEqual({
      '@type': 'type.googleapis.com/test.v1.Account',
      owner: 'alice',
      balanceCents: '1050',
      note: { '@type': 'type.googleapis.com/google.protobuf.Timestamp', value: '1970-01-01T00:00:01Z' },
    });
    const meta = json['meta'] as JsonObject;
    expect(meta['revisionDate']).toBe('2023-11-14T22:13:20Z');
    expect(meta['data']).toEqual({ origin: { '@type': 'type.googleapis.com/test.v1.Account', owner: 'x', balanceCents: '1' } });
    expect(meta['headers']).toEqual([{ key: 'x-user', stringValue: 'u' }]);
    const back = messageFromJson<ProcessCommandResponse>(ProcessCommandResponseSchema, json, { registry });
    expect(toBinary(ProcessCommandResponseSchema, back)).toEqual(toBinary(ProcessCommandResponseSchema, message));
  });

  it('writes an Any of an unknown type as the base64 of the serialized Any, and reads that back', () => {
    const state = account('bob', 7n);
    const json = messageToJson(ProcessCommandResponseSchema, response(state), { registry: bare }) as JsonObject;
    expect(json['state']).toBe(base64Encode(toBinary(AnySchema, state)));
    const back = messageFromJson<ProcessCommandResponse>(ProcessCommandResponseSchema, json, { registry: bare });
    expect(back.state).toEqual(state);
  });

  it('writes every Any as base64 in the upstream shape, with snake_case names', () => {
    const state = account('carol', 9n);
    const json = messageToJson(ProcessCommandResponseSchema, response(state), {
      registry,
      anyFormat: 'base64',
      useProtoFieldName: true,
    }) as JsonObject;
    expect(json['state']).toBe(base64Encode(toBinary(AnySchema, state)));
    const meta = json['meta'] as JsonObject;
    expect(Object.keys(meta).sort()).toEqual(['data', 'entity_id', 'headers', 'revision_date', 'revision_number']);
    expect(meta['headers']).toEqual([{ key: 'x-user', string_value: 'u' }]);
    const empty = create(ProcessCommandResponseSchema, { state, meta: create(MetaDataSchema, { entityId: 'e' }) });
    expect(messageToJson(ProcessCommandResponseSchema, empty, { registry, anyFormat: 'base64', useProtoFieldName: true, alwaysEmitImplicit: true })).toEqual({
      state: base64Encode(toBinary(AnySchema, state)),
      meta: { entity_id: 'e', revision_number: 0, data: {}, headers: [] },
    });
  });

  it('reads a command given as JSON of a known type, or as base64, under either field name', () => {
    const expected = account('dan', 5n);
    const fromObject = messageFromJson(
      ProcessCommandRequestSchema,
      { entity_id: 'a-2', command: { '@type': 'type.googleapis.com/test.v1.Account', owner: 'dan', balance_cents: 5 } },
      { registry },
    );
    expect(fromObject).toMatchObject({ entityId: 'a-2', command: expected });
    const fromBase64 = messageFromJson(
      ProcessCommandRequestSchema,
      { entityId: 'a-2', command: base64Encode(toBinary(AnySchema, expected)) },
      { registry: bare },
    );
    expect(fromBase64).toMatchObject({ entityId: 'a-2', command: expected });
  });

  it('refuses JSON that is not the message with a JsonInputError saying why', () => {
    const unknown = () => messageFromJson(ProcessCommandRequestSchema, { command: { '@type': 'type.googleapis.com/x.Y', a: 1 } }, { registry: bare });
    expect(unknown).toThrow(JsonInputError);
    expect(unknown).toThrow(/x\.Y" is not a type chief-of-state knows; give its descriptor set in COS_PROTO_DESCRIPTOR_SET/);
    expect(() => messageFromJson(ProcessCommandRequestSchema, { command: '!!not base64' }, { registry })).toThrow(JsonInputError);
    expect(() => messageFromJson(ProcessCommandRequestSchema, { entityId: 5 }, { registry })).toThrow(JsonInputError);
    expect(() => messageFromJson(ProcessCommandRequestSchema, [], { registry })).toThrow(JsonInputError);
    expect(() => messageFromJson(ProcessCommandRequestSchema, { command: {} }, { registry })).not.toThrow();
  });
});

describe('createTypeRegistry', () => {
  it('knows the well-known types and COS protocol without any set', () => {
    expect(bare.getMessage('google.protobuf.Timestamp')).toBeDefined();
    expect(bare.getService('chief_of_state.v1.ChiefOfStateService')).toBeDefined();
    expect(bare.getMessage('test.v1.Account')).toBeUndefined();
  });

  it('takes sets with or without their imports, the first of duplicate files winning', () => {
    const both = createTypeRegistry([
      { name: 'a.binpb', bytes: accountSet({ withImports: true }) },
      { name: 'b.binpb', bytes: accountSet() },
    ]);
    expect(both.getMessage('test.v1.Account')?.fields.map((field) => field.name)).toEqual(['owner', 'balance_cents', 'note']);
  });

  it('names the set that is not a descriptor set, and an import found nowhere', () => {
    expect(() => createTypeRegistry([{ name: 'junk.binpb', bytes: new Uint8Array([0xff, 0xff, 0xff]) }])).toThrow(/junk\.binpb is not a FileDescriptorSet/);
    expect(() => createTypeRegistry([{ name: 'empty.binpb', bytes: new Uint8Array() }])).toThrow(/empty\.binpb holds no file/);
    const orphan = toBinary(
      FileDescriptorSetSchema,
      create(FileDescriptorSetSchema, { file: [{ name: 'o.proto', package: 'o', syntax: 'proto3', dependency: ['missing.proto'] }] }),
    );
    expect(() => createTypeRegistry([{ name: 'o.binpb', bytes: orphan }])).toThrow(/o\.proto \(in o\.binpb\) imports missing\.proto, which is in no descriptor set/);
  });
});

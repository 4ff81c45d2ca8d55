import { ScalarType, type DescField, type DescMessage, type DescService } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import * as protocol from './index.js';

// The wire facts of ../shared/spec/protocol.md, written out independently of the .proto files:
// [message, field, number, type]. A type is a scalar name, a message name, `repeated X` or `map<K, V>`.
const FIELDS: Array<readonly [string, string, number, string]> = [
  ['MetaData', 'entity_id', 1, 'string'],
  ['MetaData', 'revision_number', 2, 'uint32'],
  ['MetaData', 'revision_date', 3, 'google.protobuf.Timestamp'],
  ['MetaData', 'data', 4, 'map<string, google.protobuf.Any>'],
  ['MetaData', 'headers', 5, 'repeated chief_of_state.v1.Header'],
  ['Header', 'key', 1, 'string'],
  ['Header', 'string_value', 2, 'string'],
  ['Header', 'bytes_value', 3, 'bytes'],
  ['ReadSideOffset', 'cluster_shard_number', 1, 'uint64'],
  ['ReadSideOffset', 'offset', 2, 'uint64'],
  ['ProcessCommandRequest', 'entity_id', 1, 'string'],
  ['ProcessCommandRequest', 'command', 2, 'google.protobuf.Any'],
  ['ProcessCommandResponse', 'state', 1, 'google.protobuf.Any'],
  ['ProcessCommandResponse', 'meta', 2, 'chief_of_state.v1.MetaData'],
  ['GetStateRequest', 'entity_id', 1, 'string'],
  ['GetStateResponse', 'state', 1, 'google.protobuf.Any'],
  ['GetStateResponse', 'meta', 2, 'chief_of_state.v1.MetaData'],
  ['HandleCommandRequest', 'command', 1, 'google.protobuf.Any'],
  ['HandleCommandRequest', 'prior_state', 2, 'google.protobuf.Any'],
  ['HandleCommandRequest', 'prior_event_meta', 3, 'chief_of_state.v1.MetaData'],
  ['HandleCommandResponse', 'event', 1, 'google.protobuf.Any'],
  ['HandleCommandResponse', 'events', 2, 'repeated google.protobuf.Any'],
  ['HandleEventRequest', 'event', 1, 'google.protobuf.Any'],
  ['HandleEventRequest', 'prior_state', 2, 'google.protobuf.Any'],
  ['HandleEventRequest', 'event_meta', 3, 'chief_of_state.v1.MetaData'],
  ['HandleEventResponse', 'resulting_state', 1, 'google.protobuf.Any'],
  ['HandleReadSideRequest', 'event', 1, 'google.protobuf.Any'],
  ['HandleReadSideRequest', 'state', 2, 'google.protobuf.Any'],
  ['HandleReadSideRequest', 'meta', 3, 'chief_of_state.v1.MetaData'],
  ['HandleReadSideRequest', 'read_side_id', 4, 'string'],
  ['HandleReadSideResponse', 'successful', 1, 'bool'],
  ['GetLatestOffsetResponse', 'offsets', 1, 'repeated chief_of_state.v1.ReadSideOffset'],
  ['GetLatestOffsetByShardResponse', 'offsets', 1, 'chief_of_state.v1.ReadSideOffset'],
  ['EventWrapper', 'event', 1, 'google.protobuf.Any'],
  ['EventWrapper', 'resulting_state', 2, 'google.protobuf.Any'],
  ['EventWrapper', 'meta', 3, 'chief_of_state.v1.MetaData'],
  ['StateWrapper', 'state', 1, 'google.protobuf.Any'],
  ['StateWrapper', 'meta', 3, 'chief_of_state.v1.MetaData'],
  // upstream's subscriptions (extensions.md, "Subscriptions")
  ['SubscribeRequest', 'entity_id', 1, 'string'],
  ['SubscribeRequest', 'subscription_id', 2, 'string'],
  ['SubscribeAllRequest', 'subscription_id', 1, 'string'],
  ['UnsubscribeRequest', 'subscription_id', 1, 'string'],
  ['UnsubscribeResponse', 'subscription_id', 1, 'string'],
  ['UnsubscribeAllRequest', 'subscription_id', 1, 'string'],
  ['UnsubscribeAllResponse', 'subscription_id', 1, 'string'],
];
for (const message of ['SubscribeResponse', 'SubscribeAllResponse']) {
  FIELDS.push([message, 'subscription_id', 1, 'string']);
  FIELDS.push([message, 'event', 2, 'google.protobuf.Any']);
  FIELDS.push([message, 'resulting_state', 3, 'google.protobuf.Any']);
  FIELDS.push([message, 'meta', 4, 'chief_of_state.v1.MetaData']);
}

/**
 * COS's own fields beyond the spec's messages: numbers 10 and up (extensions.md: catch-up
 * subscriptions; the trace context stored with each event), so they can never collide with a
 * field upstream adds below them.
 */
const EXTENSIONS: Array<readonly [string, string, number, string]> = [
  ['SubscribeRequest', 'from_revision', 10, 'uint64'],
  ['SubscribeResponse', 'offset', 10, 'uint64'],
  ['SubscribeAllRequest', 'after_offset', 10, 'uint64'],
  ['SubscribeAllResponse', 'offset', 10, 'uint64'],
  ['EventWrapper', 'traceparent', 10, 'string'],
  ['EventWrapper', 'tracestate', 11, 'string'],
];

const MANAGER_RPCS = [
  'GetLatestOffset',
  'GetLatestOffsetByShard',
  'RestartReadSide',
  'RestartReadSideByShard',
  'PauseReadSide',
  'PauseReadSideByShard',
  'ResumeReadSide',
  'ResumeReadSideByShard',
  'SkipOffset',
  'SkipOffsetByShard',
];
for (const rpc of MANAGER_RPCS) {
  FIELDS.push([`${rpc}Request`, 'read_side_id', 1, 'string']);
  if (rpc.endsWith('ByShard')) FIELDS.push([`${rpc}Request`, 'cluster_shard_number', 2, 'uint64']);
  if (!rpc.startsWith('GetLatestOffset')) FIELDS.push([`${rpc}Response`, 'successful', 1, 'bool']);
}

const SERVICES: ReadonlyArray<readonly [DescService, string[]]> = [
  [protocol.ChiefOfStateService, ['ProcessCommand', 'GetState', 'Subscribe', 'SubscribeAll', 'Unsubscribe', 'UnsubscribeAll']],
  [protocol.WriteSideHandlerService, ['HandleCommand', 'HandleEvent']],
  [protocol.ReadSideHandlerService, ['HandleReadSide']],
  [protocol.ReadSideManagerService, MANAGER_RPCS],
];

function messageByName(name: string): DescMessage {
  const schema = (protocol as Record<string, unknown>)[`${name}Schema`] as DescMessage | undefined;
  if (!schema) throw new Error(`no schema for ${name}`);
  return schema;
}

function typeOf(field: DescField): string {
  switch (field.fieldKind) {
    case 'scalar':
      return ScalarType[field.scalar].toLowerCase();
    case 'message':
      return field.message.typeName;
    case 'list':
      return `repeated ${field.listKind === 'message' ? field.message.typeName : ScalarType[field.scalar!].toLowerCase()}`;
    case 'map':
      return `map<${ScalarType[field.mapKey].toLowerCase()}, ${field.mapKind === 'message' ? field.message.typeName : 'scalar'}>`;
    case 'enum':
      return field.enum.typeName;
  }
}

describe('chief_of_state.v1 wire contract', () => {
  it.each(FIELDS)('%s.%s = %i is %s', (message, field, number, type) => {
    const schema = messageByName(message);
    expect(schema.typeName).toBe(`chief_of_state.v1.${message}`);
    const desc = schema.fields.find((f) => f.name === field);
    expect(desc, `${message}.${field} exists`).toBeDefined();
    expect(desc!.number).toBe(number);
    expect(typeOf(desc!)).toBe(type);
  });

  it.each(EXTENSIONS)('extension %s.%s = %i is %s', (message, field, number, type) => {
    const desc = messageByName(message).fields.find((f) => f.name === field);
    expect(desc, `${message}.${field} exists`).toBeDefined();
    expect(desc!.number).toBe(number);
    expect(number).toBeGreaterThanOrEqual(10);
    expect(typeOf(desc!)).toBe(type);
  });

  it('has no fields beyond the spec and the extensions', () => {
    const expected = new Map<string, number>();
    for (const [message] of [...FIELDS, ...EXTENSIONS]) expected.set(message, (expected.get(message) ?? 0) + 1);
    for (const [message, count] of expected) expect(messageByName(message).fields.length, message).toBe(count);
  });

  it('keeps Header.string_value and bytes_value in the oneof `value`', () => {
    const header = messageByName('Header');
    expect(header.oneofs.map((o) => [o.name, o.fields.map((f) => f.name)])).toEqual([
      ['value', ['string_value', 'bytes_value']],
    ]);
  });

  it('marks HandleCommandResponse.event deprecated', () => {
    const event = messageByName('HandleCommandResponse').fields.find((f) => f.name === 'event')!;
    expect(event.deprecated).toBe(true);
  });

  it.each(SERVICES)('serves %s with exactly the spec methods', (service, methods) => {
    expect(service.methods.map((m) => m.name)).toEqual(methods);
    for (const method of service.methods) {
      expect(method.methodKind).toBe(method.name === 'Subscribe' || method.name === 'SubscribeAll' ? 'server_streaming' : 'unary');
      expect(method.input.typeName).toBe(`chief_of_state.v1.${method.name}Request`);
      expect(method.output.typeName).toBe(`chief_of_state.v1.${method.name}Response`);
      expect(`/${service.typeName}/${method.name}`).toMatch(/^\/chief_of_state\.v1\.[A-Za-z]+\/[A-Za-z]+$/);
    }
  });

  it('declares the usual file options', () => {
    for (const [service] of SERVICES) {
      const options = service.file.proto.options!;
      expect(options.goPackage).toBe('chief_of_state/v1;chiefofstatev1');
      expect(options.csharpNamespace).toBe('ChiefOfState.V1');
      expect(options.javaPackage).toBe('com.github.chiefofstate.protobuf.v1');
      expect(options.javaMultipleFiles).toBe(true);
    }
  });
});

describe('Any helpers', () => {
  it('treats an Any with empty type_url and value as unset', () => {
    expect(protocol.isUnsetAny(undefined)).toBe(true);
    expect(protocol.isUnsetAny({ typeUrl: '', value: new Uint8Array() } as never)).toBe(true);
    expect(protocol.isUnsetAny({ typeUrl: 'x/y.Z', value: new Uint8Array() } as never)).toBe(false);
  });

  it('gives google.protobuf.Empty as the initial state', () => {
    expect(protocol.emptyState().typeUrl).toBe('type.googleapis.com/google.protobuf.Empty');
    expect(protocol.emptyState().value.length).toBe(0);
  });

  it('takes the name after the last slash', () => {
    expect(protocol.typeNameOf('type.googleapis.com/bank.v1.Account')).toBe('bank.v1.Account');
    expect(protocol.typeNameOf('bank.v1.Account')).toBe('bank.v1.Account');
  });
});

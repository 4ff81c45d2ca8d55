import {
  clone,
  create,
  fromBinary,
  fromJson,
  toBinary,
  toJson,
  type DescField,
  type DescMessage,
  type JsonObject,
  type JsonValue,
  type Message,
  type Registry,
} from '@bufbuild/protobuf';
import { reflect } from '@bufbuild/protobuf/reflect';
import { base64Decode, base64Encode } from '@bufbuild/protobuf/wire';
import { AnySchema, type Any } from '@bufbuild/protobuf/wkt';
import { typeNameOf } from './any.js';

/**
 * How an Any is written as JSON:
 * - `json`: proto3 JSON (`{"@type": ..., ...fields}`) when its type is in the registry, else the
 *   base64 of the serialized Any;
 * - `base64`: always the base64 of the serialized Any (the upstream HTTP front end's shape).
 */
export type AnyJsonFormat = 'json' | 'base64';

export interface AnyJsonOptions {
  /** the types an Any may be unpacked with (createTypeRegistry) */
  readonly registry: Registry;
  /** default `json` */
  readonly anyFormat?: AnyJsonFormat;
  /** snake_case field names as in the .proto (upstream's HTTP shape); default lowerCamelCase, proto3 JSON's */
  readonly useProtoFieldName?: boolean;
  /** write fields at their default (0, "", empty lists and maps) too; default false, proto3 JSON's */
  readonly alwaysEmitImplicit?: boolean;
}

/** Input that is not the message as JSON (the caller's mistake). */
export class JsonInputError extends Error {
  override readonly name = 'JsonInputError';
}

/**
 * A message as JSON, with every Any in it (at any depth) written per `anyFormat`, so a message
 * carrying a type COS was never told about still has a JSON form instead of failing (protobuf-es,
 * like every proto3 JSON library, refuses an Any whose type it cannot resolve).
 */
export function messageToJson(desc: DescMessage, message: Message, options: AnyJsonOptions): JsonValue {
  if (desc.typeName === AnySchema.typeName) return anyToJson(message as Any, options);
  const anyFields = anyBearingFields(desc);
  const emitImplicit = options.alwaysEmitImplicit ?? false;
  const jsonOptions = { registry: options.registry, useProtoFieldName: options.useProtoFieldName ?? false, alwaysEmitImplicit: emitImplicit };
  if (anyFields.length === 0) return toJson(desc, message, jsonOptions);
  // the library writes every other field; the fields leading to an Any are written here
  const rest = clone(desc, message);
  const restReflected = reflect(desc, rest);
  for (const field of anyFields) restReflected.clear(field);
  const json = toJson(desc, rest, jsonOptions) as JsonObject;
  for (const field of anyFields) {
    const value = fieldValue(message, field);
    if (value === undefined) continue;
    const name = options.useProtoFieldName ? field.name : field.jsonName;
    const element = field.message!;
    if (field.fieldKind === 'list') {
      const list = value as Message[];
      if (list.length > 0 || emitImplicit) json[name] = list.map((item) => messageToJson(element, item, options));
    } else if (field.fieldKind === 'map') {
      const entries = Object.entries(value as Record<string, Message>);
      if (entries.length > 0 || emitImplicit) json[name] = Object.fromEntries(entries.map(([key, item]) => [key, messageToJson(element, item, options)]));
    } else {
      json[name] = messageToJson(element, value as Message, options);
    }
  }
  return json;
}

/**
 * A message from JSON: proto3 JSON, where an Any may also be given as the base64 of its
 * serialization (the upstream shape; the only way to send a type COS does not know). Field
 * names in lowerCamelCase or as in the .proto; unknown fields are ignored, as Connect does.
 *
 * @throws JsonInputError when the JSON is not the message
 */
export function messageFromJson<T extends Message>(desc: DescMessage, json: JsonValue, options: AnyJsonOptions): T {
  try {
    return fromJsonValue(desc, json, options) as T;
  } catch (error) {
    if (error instanceof JsonInputError) throw error;
    throw new JsonInputError(error instanceof Error ? error.message : String(error), { cause: error });
  }
}

function fromJsonValue(desc: DescMessage, json: JsonValue, options: AnyJsonOptions): Message {
  if (desc.typeName === AnySchema.typeName) return anyFromJson(json, options);
  const anyFields = anyBearingFields(desc);
  const jsonOptions = { registry: options.registry, ignoreUnknownFields: true };
  if (anyFields.length === 0) return fromJson(desc, json, jsonOptions);
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new JsonInputError(`cannot decode ${desc.typeName} from JSON: expected an object`);
  }
  const rest: JsonObject = { ...json };
  const taken: Array<[DescField, JsonValue]> = [];
  for (const field of anyFields) {
    for (const key of new Set([field.jsonName, field.name])) {
      if (!(key in rest)) continue;
      const value = rest[key]!;
      delete rest[key];
      if (value !== null) taken.push([field, value]);
    }
  }
  const message = fromJson(desc, rest, jsonOptions);
  for (const [field, value] of taken) {
    const element = field.message!;
    let decoded: unknown;
    if (field.fieldKind === 'list') {
      if (!Array.isArray(value)) throw new JsonInputError(`cannot decode field ${desc.typeName}.${field.name} from JSON: expected an array`);
      decoded = value.map((item) => fromJsonValue(element, item, options));
    } else if (field.fieldKind === 'map') {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) {
        throw new JsonInputError(`cannot decode field ${desc.typeName}.${field.name} from JSON: expected an object`);
      }
      // proto3 JSON map keys are strings, as protobuf-es map objects' keys are
      decoded = Object.fromEntries(Object.entries(value).map(([key, item]) => [key, fromJsonValue(element, item, options)]));
    } else {
      decoded = fromJsonValue(element, value, options);
    }
    setField(message, field, decoded);
  }
  return message;
}

/** Well-known types whose JSON is not an object; packed in an Any they go under `value`. */
const CUSTOM_JSON_TYPES = new Set(
  [
    'Any',
    'Timestamp',
    'Duration',
    'FieldMask',
    'Struct',
    'Value',
    'ListValue',
    'DoubleValue',
    'FloatValue',
    'Int64Value',
    'UInt64Value',
    'Int32Value',
    'UInt32Value',
    'BoolValue',
    'StringValue',
    'BytesValue',
  ].map((name) => `google.protobuf.${name}`),
);

function anyToJson(any: Any, options: AnyJsonOptions): JsonValue {
  if ((options.anyFormat ?? 'json') === 'base64') return base64Encode(toBinary(AnySchema, any));
  if (any.typeUrl === '' && any.value.byteLength === 0) return {};
  const desc = options.registry.getMessage(typeNameOf(any.typeUrl));
  if (desc === undefined) return base64Encode(toBinary(AnySchema, any));
  let packed: Message;
  try {
    packed = fromBinary(desc, any.value);
  } catch {
    // bytes that are not the message they claim: shown as they are rather than failing the reply
    return base64Encode(toBinary(AnySchema, any));
  }
  const json = messageToJson(desc, packed, options);
  if (CUSTOM_JSON_TYPES.has(desc.typeName)) return { '@type': any.typeUrl, value: json };
  return { '@type': any.typeUrl, ...(json as JsonObject) };
}

function anyFromJson(json: JsonValue, options: AnyJsonOptions): Any {
  if (typeof json === 'string') {
    let bytes: Uint8Array;
    try {
      bytes = base64Decode(json);
    } catch {
      throw new JsonInputError('cannot decode google.protobuf.Any from JSON: a string must be the base64 of a serialized Any');
    }
    try {
      return fromBinary(AnySchema, bytes);
    } catch (error) {
      throw new JsonInputError(
        `cannot decode google.protobuf.Any from base64: not a serialized Any (${error instanceof Error ? error.message : String(error)})`,
      );
    }
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new JsonInputError('cannot decode google.protobuf.Any from JSON: expected an object with "@type", or the base64 of a serialized Any');
  }
  if (Object.keys(json).length === 0) return create(AnySchema);
  const typeUrl = json['@type'];
  if (typeof typeUrl !== 'string' || typeUrl === '') {
    throw new JsonInputError('cannot decode google.protobuf.Any from JSON: "@type" is missing');
  }
  const desc = options.registry.getMessage(typeNameOf(typeUrl));
  if (desc === undefined) {
    throw new JsonInputError(
      `cannot decode google.protobuf.Any from JSON: "${typeUrl}" is not a type chief-of-state knows; give its descriptor set in COS_PROTO_DESCRIPTOR_SET, or send the Any as the base64 of its serialization`,
    );
  }
  let inner: JsonValue;
  if (CUSTOM_JSON_TYPES.has(desc.typeName)) {
    inner = json['value'] ?? null;
  } else {
    const { '@type': _type, ...fields } = json;
    inner = fields;
  }
  return create(AnySchema, { typeUrl, value: toBinary(desc, fromJsonValue(desc, inner, options)) });
}

const anyBearing = new WeakMap<DescMessage, readonly DescField[]>();

/** The fields of a message whose values are, or contain at some depth, an Any. */
function anyBearingFields(desc: DescMessage): readonly DescField[] {
  let fields = anyBearing.get(desc);
  if (fields === undefined) {
    fields = desc.fields.filter((field) => field.message !== undefined && containsAny(field.message, new Set([desc.typeName])));
    anyBearing.set(desc, fields);
  }
  return fields;
}

function containsAny(desc: DescMessage, seen: Set<string>): boolean {
  if (desc.typeName === AnySchema.typeName) return true;
  if (seen.has(desc.typeName)) return false;
  seen.add(desc.typeName);
  return desc.fields.some((field) => field.message !== undefined && containsAny(field.message, seen));
}

function fieldValue(message: Message, field: DescField): unknown {
  const record = message as unknown as Record<string, unknown>;
  if (field.oneof !== undefined) {
    const selected = record[field.oneof.localName] as { case: string | undefined; value?: unknown };
    return selected.case === field.localName ? selected.value : undefined;
  }
  const value = record[field.localName];
  return value === null ? undefined : value;
}

function setField(message: Message, field: DescField, value: unknown): void {
  const record = message as unknown as Record<string, unknown>;
  if (field.oneof !== undefined) record[field.oneof.localName] = { case: field.localName, value };
  else record[field.localName] = value;
}

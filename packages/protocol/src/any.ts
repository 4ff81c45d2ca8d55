import { create, toBinary, type DescMessage, type MessageShape } from '@bufbuild/protobuf';
import { AnySchema, type Any } from '@bufbuild/protobuf/wkt';

/** The type URL of the prior state COS hands to handlers for a never-seen entity. */
export const EMPTY_STATE_TYPE_URL = 'type.googleapis.com/google.protobuf.Empty';

/** `Any{google.protobuf.Empty}`: the state of an entity before its first event. */
export function emptyState(): Any {
  return create(AnySchema, { typeUrl: EMPTY_STATE_TYPE_URL, value: new Uint8Array(0) });
}

/** An Any with neither a type URL nor a value counts as unset (spec: ProcessCommand 5). */
export function isUnsetAny(any: Any | undefined): boolean {
  return any === undefined || (any.typeUrl === '' && any.value.length === 0);
}

/** The fully qualified message name after the last `/` of a type URL. */
export function typeNameOf(typeUrl: string): string {
  return typeUrl.slice(typeUrl.lastIndexOf('/') + 1);
}

/** Packs a message into an Any with the standard `type.googleapis.com/` prefix. */
export function packAny<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>): Any {
  return create(AnySchema, {
    typeUrl: `type.googleapis.com/${schema.typeName}`,
    value: toBinary(schema, message),
  });
}

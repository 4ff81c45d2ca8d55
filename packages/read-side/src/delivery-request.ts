import { fromBinary } from '@bufbuild/protobuf';
import { HandleReadSideRequestSchema, type HandleReadSideRequest } from '@chiefofstate/protocol';

/**
 * The HandleReadSideRequest for a journal payload. A payload is a serialized EventWrapper
 * {event = 1 Any, resulting_state = 2 Any, meta = 3 MetaData} and the request is {event = 1 Any,
 * state = 2 Any, meta = 3 MetaData, read_side_id = 4}: the same fields with the same numbers
 * and types, so the payload decodes straight into the request (no EventWrapper in between).
 */
export function toReadSideRequest(payload: Uint8Array, readSideId: string): HandleReadSideRequest {
  // the EventWrapper's own extensions (traceparent = 10, tracestate = 11) are not the handler's
  const request = fromBinary(HandleReadSideRequestSchema, payload, { readUnknownFields: false });
  request.readSideId = readSideId;
  return request;
}

const encoder = new TextEncoder();

/**
 * The x-cos-entity-id metadata value. gRPC metadata values must be printable ASCII, so an id
 * that is not is sent percent-encoded the way grpc-message is (its UTF-8 bytes outside
 * 0x20..0x7E, and `%`, as %XX; RFC 3986 style, upper-case hex). An id with a leading or
 * trailing space is encoded too, because HTTP/2 forbids field values that start or end with
 * whitespace. `meta.entity_id` always carries the id exactly.
 */
export function entityIdHeader(entityId: string): string {
  if (isPlainHeaderValue(entityId)) return entityId;
  let out = '';
  for (const byte of encoder.encode(entityId)) {
    out +=
      byte >= 0x20 && byte <= 0x7e && byte !== 0x25
        ? String.fromCharCode(byte)
        : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  // the outer spaces, which the loop keeps
  return out.replace(/^ +| +$/g, (spaces) => '%20'.repeat(spaces.length));
}

function isPlainHeaderValue(value: string): boolean {
  if (value.startsWith(' ') || value.endsWith(' ')) return false;
  for (let i = 0; i < value.length; i++) {
    const code = value.charCodeAt(i);
    if (code < 0x20 || code > 0x7e) return false;
  }
  return true;
}

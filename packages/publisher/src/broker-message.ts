import { fromBinary } from '@bufbuild/protobuf';
import { EventWrapperSchema, type EventWrapper } from '@chiefofstate/protocol';
import { readEnvelope, type EnvelopeHeader, type EventEnvelope } from './event-envelope.js';
import type { BrokerMessage } from './ports.js';

/** Header names every published message carries (see the README for their meaning). */
export const MESSAGE_HEADERS = {
  id: 'cos-message-id',
  entityId: 'cos-entity-id',
  revision: 'cos-revision',
  shard: 'cos-shard',
  /** the event's journal position (global, increasing in commit order) */
  position: 'cos-position',
  eventType: 'cos-event-type',
  /** prefix of the event's persisted headers (MetaData.headers) */
  persistedPrefix: 'cos-header-',
  /** `application/json` with the JSON payload format; absent: the serialized EventWrapper */
  contentType: 'content-type',
} as const;

/** The id a consumer deduplicates by: the same for each publication of one event. */
export function messageId(entityId: string, revision: number | bigint): string {
  return `${entityId}:${revision}`;
}

/** One journal event as the read-side engine reads it. */
export interface StoredEvent {
  readonly position: bigint;
  readonly shard: number;
  /** the serialized EventWrapper, as stored */
  readonly payload: Uint8Array;
}

/**
 * The broker message of one journal event: the stored EventWrapper bytes as the payload, and
 * headers from the wrapper's envelope (id, key, revision, event type, persisted headers, and the
 * W3C trace context of the command when it had one), read once without decoding the rest.
 */
export function toBrokerMessage(event: StoredEvent, envelope: EventEnvelope = readEnvelope(event.payload)): BrokerMessage {
  const { entityId, revision } = envelope;
  const id = messageId(entityId, revision);
  const headers: Record<string, string> = {
    [MESSAGE_HEADERS.id]: headerValue(id),
    [MESSAGE_HEADERS.entityId]: headerValue(entityId),
    [MESSAGE_HEADERS.revision]: String(revision),
    [MESSAGE_HEADERS.shard]: String(event.shard),
    [MESSAGE_HEADERS.position]: String(event.position),
    [MESSAGE_HEADERS.eventType]: headerValue(envelope.eventType),
  };
  if (envelope.traceparent !== '') headers['traceparent'] = headerValue(envelope.traceparent);
  if (envelope.tracestate !== '') headers['tracestate'] = headerValue(envelope.tracestate);
  for (const header of envelope.headers) addPersisted(headers, header);
  return { id, key: entityId, headers, payload: event.payload };
}

/** The EventWrapper a consumer decodes from a message payload. */
export function decodePayload(payload: Uint8Array): EventWrapper {
  return fromBinary(EventWrapperSchema, payload);
}

function addPersisted(headers: Record<string, string>, header: EnvelopeHeader): void {
  const name = `${MESSAGE_HEADERS.persistedPrefix}${header.key}`;
  const value =
    header.value.case === 'bytesValue'
      ? Buffer.from(header.value.value).toString('base64')
      : header.value.case === 'stringValue'
        ? headerValue(header.value.value)
        : '';
  // a header persisted several times: values joined as HTTP does
  headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
}

const encoder = new TextEncoder();

/**
 * A header value both brokers carry unchanged: printable ASCII as is; anything else (UTF-8 entity
 * ids, control characters) percent-encoded per UTF-8 byte, like grpc-message and the read sides'
 * x-cos-entity-id. The payload always carries the exact values.
 */
export function headerValue(value: string): string {
  if (passesAsIs(value)) return value;
  let out = '';
  for (const byte of encoder.encode(value)) {
    out += byte > 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/**
 * Printable ASCII without '%' and without a space at either end: what headerValue leaves as it
 * is. One pass over the characters (the regular expression, `includes` and `trim` it replaces
 * took three, and the trimmed copy; every message has five values to check).
 */
export function passesAsIs(value: string): boolean {
  const last = value.length - 1;
  for (let index = 0; index <= last; index++) {
    const code = value.charCodeAt(index);
    if (code < 0x20 || code > 0x7e || code === 0x25 || (code === 0x20 && (index === 0 || index === last))) return false;
  }
  return true;
}

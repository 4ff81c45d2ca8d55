import { fromBinary, toBinary } from '@bufbuild/protobuf';
import { EventWrapperSchema, HandleReadSideRequestSchema, type HandleReadSideRequest, type Header } from '@chiefofstate/protocol';
import type { BrokerMessage } from './ports.js';

/** Header names every published message carries (see the README for their meaning). */
export const MESSAGE_HEADERS = {
  id: 'cos-message-id',
  entityId: 'cos-entity-id',
  revision: 'cos-revision',
  shard: 'cos-shard',
  eventType: 'cos-event-type',
  /** prefix of the event's persisted headers (MetaData.headers) */
  persistedPrefix: 'cos-header-',
} as const;

/** The id a consumer deduplicates by: the same for each publication of one event. */
export function messageId(entityId: string, revision: number | bigint): string {
  return `${entityId}:${revision}`;
}

/**
 * The broker message of one delivery of the read-side engine. The engine hands over the
 * HandleReadSideRequest decoded from the journal payload; without its read_side_id it has the
 * fields, numbers and types of the EventWrapper, so its bytes are the EventWrapper's.
 */
export function toBrokerMessage(request: HandleReadSideRequest, shard: number): BrokerMessage {
  const meta = request.meta;
  const entityId = meta?.entityId ?? '';
  const revision = meta?.revisionNumber ?? 0;
  const payload = toBinary(HandleReadSideRequestSchema, { ...request, readSideId: '' });
  const id = messageId(entityId, revision);
  const headers: Record<string, string> = {
    [MESSAGE_HEADERS.id]: headerValue(id),
    [MESSAGE_HEADERS.entityId]: headerValue(entityId),
    [MESSAGE_HEADERS.revision]: String(revision),
    [MESSAGE_HEADERS.shard]: String(shard),
    [MESSAGE_HEADERS.eventType]: headerValue(request.event?.typeUrl ?? ''),
  };
  for (const header of meta?.headers ?? []) addPersisted(headers, header);
  return { id, key: entityId, headers, payload };
}

/** The EventWrapper a consumer decodes from a message payload. */
export function decodePayload(payload: Uint8Array) {
  return fromBinary(EventWrapperSchema, payload);
}

function addPersisted(headers: Record<string, string>, header: Header): void {
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
  if (/^[\x20-\x7e]*$/.test(value) && !value.includes('%') && value.trim() === value) return value;
  let out = '';
  for (const byte of encoder.encode(value)) {
    out += byte > 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

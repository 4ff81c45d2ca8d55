import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import type { EventWrapper } from '@chiefofstate/protocol';

/** A persisted header (chief_of_state.v1.Header) as the message headers need it. */
export interface EnvelopeHeader {
  readonly key: string;
  readonly value: { readonly case: 'stringValue'; readonly value: string } | { readonly case: 'bytesValue'; readonly value: Uint8Array } | { readonly case: undefined };
}

/** What a broker message needs of an EventWrapper: no event or state bytes, no dates. */
export interface EventEnvelope {
  entityId: string;
  revision: number;
  /** the event's type URL */
  eventType: string;
  traceparent: string;
  tracestate: string;
  readonly headers: EnvelopeHeader[];
}

// field numbers: EventWrapper {event = 1 Any, resulting_state = 2, meta = 3, traceparent = 10,
// tracestate = 11}; Any {type_url = 1}; MetaData {entity_id = 1, revision_number = 2,
// headers = 5}; Header {key = 1, string_value = 2, bytes_value = 3}
const LEN = WireType.LengthDelimited;

/**
 * The envelope of a serialized EventWrapper, read field by field: the event's and the state's
 * bytes, the revision date and the metadata's data map are skipped, not decoded, which makes it
 * a few times cheaper than decoding the whole wrapper (a publisher reads every event). Follows
 * protobuf's rules: the last value of a scalar field wins, a message field given twice is merged.
 */
export function readEnvelope(payload: Uint8Array): EventEnvelope {
  const envelope: EventEnvelope = { entityId: '', revision: 0, eventType: '', traceparent: '', tracestate: '', headers: [] };
  // one reader walks the nested messages too (each up to its end), none allocated per field
  const reader = new BinaryReader(payload);
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === LEN) readAny(reader, envelope);
    else if (field === 3 && wireType === LEN) readMeta(reader, envelope);
    else if (field === 10 && wireType === LEN) envelope.traceparent = reader.string();
    else if (field === 11 && wireType === LEN) envelope.tracestate = reader.string();
    else reader.skip(wireType, field);
  }
  return envelope;
}

/** The envelope of an EventWrapper already decoded. */
export function envelopeOf(wrapper: EventWrapper): EventEnvelope {
  return {
    entityId: wrapper.meta?.entityId ?? '',
    revision: wrapper.meta?.revisionNumber ?? 0,
    eventType: wrapper.event?.typeUrl ?? '',
    traceparent: wrapper.traceparent,
    tracestate: wrapper.tracestate,
    headers: (wrapper.meta?.headers ?? []).map((header) => ({ key: header.key, value: header.value })),
  };
}

/** The end of the length-delimited message the reader is at (its length read). */
function endOf(reader: BinaryReader): number {
  const end = reader.uint32() + reader.pos;
  if (end > reader.len) throw new RangeError('premature EOF');
  return end;
}

function readAny(reader: BinaryReader, envelope: EventEnvelope): void {
  const end = endOf(reader);
  while (reader.pos < end) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === LEN) envelope.eventType = reader.string();
    else reader.skip(wireType, field);
  }
  if (reader.pos !== end) throw new RangeError('a field overruns its message');
}

function readMeta(reader: BinaryReader, envelope: EventEnvelope): void {
  const end = endOf(reader);
  while (reader.pos < end) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === LEN) envelope.entityId = reader.string();
    else if (field === 2 && wireType === WireType.Varint) envelope.revision = reader.uint32();
    else if (field === 5 && wireType === LEN) envelope.headers.push(readHeader(reader));
    else reader.skip(wireType, field);
  }
  if (reader.pos !== end) throw new RangeError('a field overruns its message');
}

function readHeader(reader: BinaryReader): EnvelopeHeader {
  const end = endOf(reader);
  let key = '';
  let value: EnvelopeHeader['value'] = { case: undefined };
  while (reader.pos < end) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === LEN) key = reader.string();
    else if (field === 2 && wireType === LEN) value = { case: 'stringValue', value: reader.string() };
    else if (field === 3 && wireType === LEN) value = { case: 'bytesValue', value: reader.bytes() };
    else reader.skip(wireType, field);
  }
  if (reader.pos !== end) throw new RangeError('a field overruns its message');
  return { key, value };
}

import type { AttributeValue, Attributes, HrTime, Link, SpanContext } from '@opentelemetry/api';
import type { InstrumentationScope } from '@opentelemetry/core';
import type { Resource } from '@opentelemetry/resources';
import type { ReadableSpan, TimedEvent } from '@opentelemetry/sdk-trace-base';

// OTLP/protobuf encoding of finished spans (opentelemetry/proto trace/v1, common/v1, resource/v1),
// written once, straight into a reused buffer. It produces the same bytes as
// @opentelemetry/otlp-transformer's ProtobufTraceSerializer (a test holds it to that), without
// its size-estimating first pass or an array per id, so a span can be encoded when it ends and
// the span object dropped, instead of held until its batch is exported.

const LEN = 2;
const VARINT = 0;
const I64 = 1;
const I32 = 5;

/** Span.flags: the context's trace flags, plus whether it is known to be remote (OTLP 1.4). */
const FLAGS_HAS_IS_REMOTE = 0x100;
const FLAGS_IS_REMOTE = 0x200;

const HEX = new Uint8Array(128);
for (let i = 0; i < 10; i++) HEX[48 + i] = i;
for (let i = 0; i < 6; i++) HEX[97 + i] = HEX[65 + i] = 10 + i;

/** A growable byte buffer with the protobuf wire primitives COS's spans need. */
class ProtobufBuffer {
  bytes: Uint8Array;
  pos = 0;
  private view: DataView;

  constructor(initialSize = 64 * 1024) {
    this.bytes = new Uint8Array(initialSize);
    this.view = new DataView(this.bytes.buffer);
  }

  /** what was written, as a view of the buffer (valid until the next write or reset) */
  written(): Uint8Array {
    return this.bytes.subarray(0, this.pos);
  }

  reset(): void {
    this.pos = 0;
  }

  ensure(size: number): void {
    const needed = this.pos + size;
    if (needed <= this.bytes.length) return;
    let length = this.bytes.length * 2;
    while (length < needed) length *= 2;
    const bytes = new Uint8Array(length);
    bytes.set(this.bytes.subarray(0, this.pos));
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer);
  }

  tag(field: number, wireType: number): void {
    this.uint32((field << 3) | wireType);
  }

  uint32(value: number): void {
    this.ensure(5);
    let v = value >>> 0;
    while (v > 0x7f) {
      this.bytes[this.pos++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    this.bytes[this.pos++] = v;
  }

  /** an int64 from a safe integer: two's complement in ten bytes when negative */
  int64(value: number): void {
    if (value >= 0 && value <= 0xffffffff) return this.uint32(value);
    let low: number;
    let high: number;
    const abs = Math.abs(value);
    low = abs >>> 0;
    high = Math.floor(abs / 0x100000000) >>> 0;
    if (value < 0) {
      low = ~low >>> 0;
      high = ~high >>> 0;
      low = (low + 1) >>> 0;
      if (low === 0) high = (high + 1) >>> 0;
    }
    this.ensure(10);
    while (high > 0 || low > 0x7f) {
      this.bytes[this.pos++] = (low & 0x7f) | 0x80;
      low = ((low >>> 7) | (high << 25)) >>> 0;
      high >>>= 7;
    }
    this.bytes[this.pos++] = low;
  }

  fixed32(value: number): void {
    this.ensure(4);
    this.view.setUint32(this.pos, value >>> 0, true);
    this.pos += 4;
  }

  fixed64(low: number, high: number): void {
    this.ensure(8);
    this.view.setUint32(this.pos, low >>> 0, true);
    this.view.setUint32(this.pos + 4, high >>> 0, true);
    this.pos += 8;
  }

  double(value: number): void {
    this.ensure(8);
    this.view.setFloat64(this.pos, value, true);
    this.pos += 8;
  }

  /** an HrTime as nanoseconds since the epoch, fixed64, exactly (the product exceeds 2^53) */
  hrTime(time: HrTime): void {
    // seconds * 1e9 + nanos = fromHigh * 2^16 + fromLow, each part an exact double below 2^47
    const fromHigh = Math.floor(time[0] / 0x10000) * 1e9;
    const fromLow = (time[0] % 0x10000) * 1e9 + time[1];
    const low = (fromHigh % 0x10000) * 0x10000 + (fromLow % 0x100000000);
    const high = Math.floor(fromHigh / 0x10000) + Math.floor(fromLow / 0x100000000) + Math.floor(low / 0x100000000);
    this.fixed64(low % 0x100000000, high);
  }

  string(value: string): void {
    const length = value.length;
    this.ensure(length + 5);
    const start = this.pos;
    // ASCII, the common case, is copied here; anything else is re-encoded as UTF-8 below
    this.uint32(length);
    const bytes = this.bytes;
    let pos = this.pos;
    for (let i = 0; i < length; i++) {
      const code = value.charCodeAt(i);
      if (code > 0x7f) {
        this.pos = start;
        this.utf8(value);
        return;
      }
      bytes[pos++] = code;
    }
    this.pos = pos;
  }

  private utf8(value: string): void {
    const encoded = encoder.encode(value);
    this.uint32(encoded.length);
    this.ensure(encoded.length);
    this.bytes.set(encoded, this.pos);
    this.pos += encoded.length;
  }

  bytesField(value: Uint8Array): void {
    this.uint32(value.length);
    this.ensure(value.length);
    this.bytes.set(value, this.pos);
    this.pos += value.length;
  }

  /** a hex id (trace or span id) as its bytes, without an intermediate array */
  hexId(hex: string): void {
    const length = hex.length >>> 1;
    this.uint32(length);
    this.ensure(length);
    const bytes = this.bytes;
    let pos = this.pos;
    for (let i = 0; i < hex.length; i += 2) {
      bytes[pos++] = (HEX[hex.charCodeAt(i) & 0x7f]! << 4) | HEX[hex.charCodeAt(i + 1) & 0x7f]!;
    }
    this.pos = pos;
  }

  /** Starts a length-delimited field; `reserve` bytes are kept for its length (its likely size). */
  fork(reserve = 1): number {
    this.ensure(reserve);
    this.pos += reserve;
    return this.pos;
  }

  /** Writes the length of the field started at `start`, moving its body if the guess was wrong. */
  join(start: number, reserve = 1): void {
    const length = this.pos - start;
    const size = length < 0x80 ? 1 : length < 0x4000 ? 2 : length < 0x200000 ? 3 : length < 0x10000000 ? 4 : 5;
    if (size !== reserve) {
      this.ensure(size - reserve);
      this.bytes.copyWithin(start + size - reserve, start, this.pos);
      this.pos += size - reserve;
    }
    let at = start - reserve;
    let v = length;
    while (v > 0x7f) {
      this.bytes[at++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    this.bytes[at] = v;
  }
}

const encoder = new TextEncoder();
const MIN_INT64 = -(2 ** 63);
const MAX_INT64 = 2 ** 63;

/** `attributes` as repeated KeyValue in `field`. */
function writeAttributes(out: ProtobufBuffer, attributes: Attributes, field: number): void {
  for (const key in attributes) {
    if (!Object.prototype.hasOwnProperty.call(attributes, key)) continue;
    out.tag(field, LEN);
    const keyValue = out.fork();
    out.tag(1, LEN);
    out.string(key);
    out.tag(2, LEN);
    const value = out.fork();
    writeAnyValue(out, attributes[key]);
    out.join(value);
    out.join(keyValue);
  }
}

function writeAnyValue(out: ProtobufBuffer, value: AttributeValue | null | undefined): void {
  if (typeof value === 'string') {
    out.tag(1, LEN);
    out.string(value);
  } else if (typeof value === 'boolean') {
    out.tag(2, VARINT);
    out.uint32(value ? 1 : 0);
  } else if (typeof value === 'number') {
    if (Number.isInteger(value) && value >= MIN_INT64 && value < MAX_INT64) {
      out.tag(3, VARINT);
      out.int64(value);
    } else {
      out.tag(4, I64);
      out.double(value);
    }
  } else if (Array.isArray(value)) {
    out.tag(5, LEN);
    const array = out.fork();
    for (const item of value) {
      out.tag(1, LEN);
      const element = out.fork();
      writeAnyValue(out, item);
      out.join(element);
    }
    out.join(array);
  }
}

function spanFlags(context: SpanContext, isRemote: boolean | undefined): number {
  return (context.traceFlags & 0xff) | FLAGS_HAS_IS_REMOTE | (isRemote ? FLAGS_IS_REMOTE : 0);
}

function writeEvent(out: ProtobufBuffer, event: TimedEvent): void {
  out.tag(1, I64);
  out.hrTime(event.time);
  out.tag(2, LEN);
  out.string(event.name);
  if (event.attributes) writeAttributes(out, event.attributes, 3);
  out.tag(4, VARINT);
  out.uint32(event.droppedAttributesCount ?? 0);
}

/** trace_id, span_id and trace_state: fields 1 to 3 of both a Span and a Link */
function writeContext(out: ProtobufBuffer, context: SpanContext): void {
  out.tag(1, LEN);
  out.hexId(context.traceId);
  out.tag(2, LEN);
  out.hexId(context.spanId);
  const traceState = context.traceState?.serialize();
  if (traceState) {
    out.tag(3, LEN);
    out.string(traceState);
  }
}

function writeLink(out: ProtobufBuffer, link: Link): void {
  const context = link.context;
  writeContext(out, context);
  if (link.attributes) writeAttributes(out, link.attributes, 4);
  out.tag(5, VARINT);
  out.uint32(link.droppedAttributesCount ?? 0);
  out.tag(6, I32);
  out.fixed32(spanFlags(context, context.isRemote));
}

/** `items` as a repeated message field */
function writeMessages<T>(out: ProtobufBuffer, field: number, items: readonly T[], write: (out: ProtobufBuffer, item: T) => void): void {
  for (const item of items) {
    out.tag(field, LEN);
    const at = out.fork();
    write(out, item);
    out.join(at);
  }
}

/** Most of COS's spans encode to between 128 and 16383 bytes: two bytes of length. */
const SPAN_LENGTH_GUESS = 2;

/** Appends `span` as one `spans` entry (field 2) of a ScopeSpans body. */
function writeSpan(out: ProtobufBuffer, span: ReadableSpan): void {
  out.tag(2, LEN);
  const start = out.fork(SPAN_LENGTH_GUESS);
  const context = span.spanContext();
  writeContext(out, context);
  const parent = span.parentSpanContext;
  if (parent?.spanId) {
    out.tag(4, LEN);
    out.hexId(parent.spanId);
  }
  out.tag(5, LEN);
  out.string(span.name);
  // OTLP's SpanKind counts from 1: 0 is "unspecified", which the API has no value for
  out.tag(6, VARINT);
  out.uint32(span.kind + 1);
  out.tag(7, I64);
  out.hrTime(span.startTime);
  out.tag(8, I64);
  out.hrTime(span.endTime);
  writeAttributes(out, span.attributes, 9);
  out.tag(10, VARINT);
  out.uint32(span.droppedAttributesCount);
  writeMessages(out, 11, span.events, writeEvent);
  out.tag(12, VARINT);
  out.uint32(span.droppedEventsCount);
  writeMessages(out, 13, span.links, writeLink);
  out.tag(14, VARINT);
  out.uint32(span.droppedLinksCount);
  out.tag(15, LEN);
  const status = out.fork();
  if (span.status.message) {
    out.tag(2, LEN);
    out.string(span.status.message);
  }
  out.tag(3, VARINT);
  out.uint32(span.status.code);
  out.join(status);
  out.tag(16, I32);
  out.fixed32(spanFlags(context, parent?.isRemote));
  out.join(start, SPAN_LENGTH_GUESS);
}

/** A Resource message's body. */
function encodeResource(resource: Resource): Uint8Array {
  const out = new ProtobufBuffer(256);
  writeAttributes(out, resource.attributes, 1);
  out.tag(2, VARINT);
  out.uint32(0);
  return out.written().slice();
}

/** An InstrumentationScope message's body. */
function encodeScope(scope: InstrumentationScope): Uint8Array {
  const out = new ProtobufBuffer(256);
  out.tag(1, LEN);
  out.string(scope.name);
  if (scope.version) {
    out.tag(2, LEN);
    out.string(scope.version);
  }
  // scope attributes (field 3) are not in this SDK's InstrumentationScope
  return out.written().slice();
}

/** Finished spans encoded as they are added, grouped by resource and scope as OTLP nests them. */
export interface SpanBatch {
  /** spans added since the last `take` */
  readonly size: number;
  add(span: ReadableSpan): void;
  /** the ExportTraceServiceRequest of the spans added since the last `take`, which it forgets */
  take(): Uint8Array;
}

interface ScopeGroup {
  readonly scope: Uint8Array;
  readonly schemaUrl: string | undefined;
  readonly spans: ProtobufBuffer;
}

interface ResourceGroup {
  readonly resource: Uint8Array;
  readonly schemaUrl: string | undefined;
  readonly scopes: Map<InstrumentationScope, ScopeGroup>;
}

/**
 * A batch of encoded spans. Resources and scopes are told apart by identity (each tracer has one
 * of each), and their encodings and buffers are kept across batches: a steady stream of spans
 * allocates nothing here but each request.
 */
export function createSpanBatch(): SpanBatch {
  const resources = new Map<Resource, ResourceGroup>();
  let size = 0;

  function group(span: ReadableSpan): ProtobufBuffer {
    let resource = resources.get(span.resource);
    if (resource === undefined) {
      resource = { resource: encodeResource(span.resource), schemaUrl: span.resource.schemaUrl, scopes: new Map() };
      resources.set(span.resource, resource);
    }
    const key = span.instrumentationScope;
    let scope = resource.scopes.get(key);
    if (scope === undefined) {
      scope = { scope: encodeScope(key), schemaUrl: key.schemaUrl, spans: new ProtobufBuffer(16 * 1024) };
      resource.scopes.set(key, scope);
    }
    return scope.spans;
  }

  return {
    get size() {
      return size;
    },
    add(span) {
      writeSpan(group(span), span);
      size++;
    },
    take() {
      const request = encodeExportRequest(resources);
      // Groups that stayed empty this time go: a short-lived tracer's buffers are not kept.
      for (const [key, resource] of resources) {
        for (const [scopeKey, scope] of resource.scopes) {
          if (scope.spans.pos === 0) resource.scopes.delete(scopeKey);
          scope.spans.reset();
        }
        if (resource.scopes.size === 0) resources.delete(key);
      }
      size = 0;
      return request;
    },
  };
}

/** An ExportTraceServiceRequest of already encoded spans, in one exactly sized array. */
function encodeExportRequest(resources: ReadonlyMap<Resource, ResourceGroup>): Uint8Array {
  let size = 0;
  for (const resource of resources.values()) {
    size += 16 + resource.resource.length + (resource.schemaUrl?.length ?? 0) * 3;
    for (const scope of resource.scopes.values()) {
      size += 16 + scope.scope.length + scope.spans.pos + (scope.schemaUrl?.length ?? 0) * 3;
    }
  }
  const out = new ProtobufBuffer(size);
  for (const resource of resources.values()) {
    let spans = 0;
    for (const scope of resource.scopes.values()) spans += scope.spans.pos;
    if (spans === 0) continue;
    out.tag(1, LEN);
    const resourceSpans = out.fork(3);
    out.tag(1, LEN);
    out.bytesField(resource.resource);
    for (const scope of resource.scopes.values()) {
      if (scope.spans.pos === 0) continue;
      out.tag(2, LEN);
      const scopeSpans = out.fork(3);
      out.tag(1, LEN);
      out.bytesField(scope.scope);
      out.ensure(scope.spans.pos);
      out.bytes.set(scope.spans.written(), out.pos);
      out.pos += scope.spans.pos;
      if (scope.schemaUrl) {
        out.tag(3, LEN);
        out.string(scope.schemaUrl);
      }
      out.join(scopeSpans, 3);
    }
    if (resource.schemaUrl) {
      out.tag(3, LEN);
      out.string(resource.schemaUrl);
    }
    out.join(resourceSpans, 3);
  }
  return out.written();
}

import protobuf from 'protobufjs';

/**
 * The part of the OTLP trace schema (opentelemetry/proto trace/v1, common/v1, resource/v1) the
 * receiver reads; protobuf skips every other field. Field names become camelCase, as in OTLP JSON.
 */
const SCHEMA = `
syntax = "proto3";
message ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
message ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; }
message Resource { repeated KeyValue attributes = 1; }
message ScopeSpans { repeated Span spans = 2; }
message Span {
  bytes trace_id = 1;
  bytes span_id = 2;
  bytes parent_span_id = 4;
  string name = 5;
  int32 kind = 6;
  repeated KeyValue attributes = 9;
  repeated Link links = 13;
}
message Link { bytes trace_id = 1; bytes span_id = 2; }
message KeyValue { string key = 1; AnyValue value = 2; }
message AnyValue {
  oneof value {
    string string_value = 1;
    bool bool_value = 2;
    int64 int_value = 3;
    double double_value = 4;
    ArrayValue array_value = 5;
    KeyValueList kvlist_value = 6;
    bytes bytes_value = 7;
  }
}
message ArrayValue { repeated AnyValue values = 1; }
message KeyValueList { repeated KeyValue values = 1; }
`;

const ExportTraceServiceRequest = protobuf.parse(SCHEMA).root.lookupType('ExportTraceServiceRequest');

interface IdsAsBase64 {
  traceId?: string;
  spanId?: string;
  parentSpanId?: string;
  links?: IdsAsBase64[];
}

/**
 * An OTLP/protobuf export request as the OTLP JSON encoding would carry it: ids as lowercase hex,
 * 64-bit integers as numbers, bytes values as base64, repeated fields as arrays (maybe empty).
 */
export function decodeOtlpProtobuf(body: Uint8Array): unknown {
  const request = ExportTraceServiceRequest.toObject(ExportTraceServiceRequest.decode(body), {
    longs: Number,
    bytes: String,
    arrays: true,
  }) as { resourceSpans?: Array<{ scopeSpans?: Array<{ spans?: IdsAsBase64[] }> }> };
  for (const resourceSpans of request.resourceSpans ?? []) {
    for (const scope of resourceSpans.scopeSpans ?? []) {
      for (const span of scope.spans ?? []) {
        idsToHex(span);
        for (const link of span.links ?? []) idsToHex(link);
      }
    }
  }
  return request;
}

function idsToHex(item: IdsAsBase64): void {
  for (const key of ['traceId', 'spanId', 'parentSpanId'] as const) {
    const value = item[key];
    if (value === undefined) continue;
    const hex = Buffer.from(value, 'base64').toString('hex');
    if (hex === '') delete item[key];
    else item[key] = hex;
  }
}

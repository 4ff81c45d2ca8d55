import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { decodeOtlpProtobuf } from './otlp-protobuf.js';

/** An OTLP JSON KeyValue: `value` holds one of stringValue, intValue, boolValue, ... */
export interface OtlpKeyValue {
  key: string;
  value: Record<string, unknown>;
}

export interface OtlpSpan {
  /** lowercase hex, whichever encoding the span came in */
  traceId: string;
  spanId: string;
  /** absent on a root span */
  parentSpanId?: string;
  name: string;
  /** 1 internal, 2 server, 3 client */
  kind: number;
  attributes: OtlpKeyValue[];
  links?: Array<{ traceId: string; spanId: string }>;
  /** the service.name of the resource it came from */
  service: string;
}

/** One POST the receiver answered. */
export interface OtlpExportRequest {
  /** the URL path, e.g. /v1/traces */
  path: string;
  /** the media type, without parameters: application/x-protobuf or application/json when accepted */
  contentType: string;
  gzip: boolean;
  /** 200; 415 for another content type; 400 for a body that does not decode */
  status: number;
  /** the spans it carried */
  spans: number;
}

export interface OtlpReceiver {
  readonly spans: OtlpSpan[];
  /** the resource attributes of each export, flattened */
  readonly resources: Array<Record<string, unknown>>;
  /** every request in arrival order, to tell which protocol an exporter used */
  readonly requests: OtlpExportRequest[];
  /** base URL, as OTEL_EXPORTER_OTLP_ENDPOINT */
  readonly endpoint: string;
  /** the traces URL, base + /v1/traces */
  readonly tracesUrl: string;
  close(): Promise<void>;
}

/** The value of a span attribute, whatever its OTLP type. */
export function spanAttribute(span: OtlpSpan, key: string): unknown {
  const value = span.attributes.find((a) => a.key === key)?.value;
  return value === undefined ? undefined : Object.values(value)[0];
}

/** An export request in the OTLP JSON shape; protobuf requests are decoded into it. */
interface ExportRequest {
  resourceSpans?: Array<{
    resource?: { attributes?: OtlpKeyValue[] };
    scopeSpans?: Array<{ spans?: WireSpan[] }>;
  }>;
}

interface WireSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name?: string;
  kind?: number;
  attributes?: OtlpKeyValue[];
  links?: Array<{ traceId: string; spanId: string }>;
}

const DECODERS: Record<string, { decode(body: Buffer): unknown; answer: string | Buffer }> = {
  'application/x-protobuf': { decode: decodeOtlpProtobuf, answer: Buffer.alloc(0) },
  'application/json': { decode: (body) => JSON.parse(body.toString('utf8')), answer: '{}' },
};

/**
 * An OTLP/HTTP trace receiver, standing in for a collector or Jaeger: it accepts protobuf and JSON
 * export requests, gzip-compressed or not, at any path, and answers each in its own encoding.
 */
export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: OtlpSpan[] = [];
  const resources: Array<Record<string, unknown>> = [];
  const requests: OtlpExportRequest[] = [];
  const server: Server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const received = receive(request, Buffer.concat(chunks));
      requests.push(received.record);
      for (const resourceSpans of received.payload?.resourceSpans ?? []) {
        const resource = Object.fromEntries(
          (resourceSpans.resource?.attributes ?? []).map((a) => [a.key, Object.values(a.value)[0]]),
        );
        resources.push(resource);
        const service = String(resource['service.name'] ?? '');
        for (const scope of resourceSpans.scopeSpans ?? []) {
          for (const span of scope.spans ?? []) spans.push(toOtlpSpan(span, service));
        }
      }
      answer(response, received.record);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    spans,
    resources,
    requests,
    endpoint,
    tracesUrl: `${endpoint}/v1/traces`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

function receive(request: IncomingMessage, raw: Buffer): { record: OtlpExportRequest; payload?: ExportRequest } {
  const contentType = (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  const gzip = request.headers['content-encoding'] === 'gzip';
  const record = { path: request.url ?? '', contentType, gzip, status: 200, spans: 0 };
  const decoder = DECODERS[contentType];
  if (decoder === undefined) return { record: { ...record, status: 415 } };
  try {
    const payload = decoder.decode(gzip ? gunzipSync(raw) : raw) as ExportRequest;
    const count = (payload.resourceSpans ?? [])
      .flatMap((resourceSpans) => resourceSpans.scopeSpans ?? [])
      .reduce((sum, scope) => sum + (scope.spans?.length ?? 0), 0);
    return { record: { ...record, spans: count }, payload };
  } catch {
    return { record: { ...record, status: 400 } };
  }
}

function answer(response: ServerResponse, record: OtlpExportRequest): void {
  const decoder = DECODERS[record.contentType];
  if (record.status !== 200 || decoder === undefined) {
    response.writeHead(record.status).end();
    return;
  }
  response.writeHead(200, { 'content-type': record.contentType }).end(decoder.answer);
}

/** Only the fields OtlpSpan names, so a span looks the same whichever encoding carried it. */
function toOtlpSpan(span: WireSpan, service: string): OtlpSpan {
  return {
    traceId: span.traceId.toLowerCase(),
    spanId: span.spanId.toLowerCase(),
    ...(span.parentSpanId ? { parentSpanId: span.parentSpanId.toLowerCase() } : {}),
    name: span.name ?? '',
    kind: span.kind ?? 0,
    attributes: span.attributes ?? [],
    links: (span.links ?? []).map((link) => ({ traceId: link.traceId.toLowerCase(), spanId: link.spanId.toLowerCase() })),
    service,
  };
}

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  /** 1 internal, 2 server, 3 client */
  kind: number;
  attributes: Array<{ key: string; value: Record<string, unknown> }>;
  links?: Array<{ traceId: string; spanId: string }>;
  /** the service.name of the resource it came from */
  service: string;
}

export interface OtlpReceiver {
  readonly spans: OtlpSpan[];
  /** the resource attributes of each export, flattened */
  readonly resources: Array<Record<string, unknown>>;
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

/** An OTLP/HTTP (JSON) trace receiver, standing in for a collector or Jaeger. */
export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: OtlpSpan[] = [];
  const resources: Array<Record<string, unknown>> = [];
  const server: Server = createServer((request, response) => {
    let body = '';
    request.on('data', (chunk: Buffer) => (body += chunk.toString()));
    request.on('end', () => {
      const payload = JSON.parse(body) as {
        resourceSpans: Array<{
          resource: { attributes: Array<{ key: string; value: Record<string, unknown> }> };
          scopeSpans: Array<{ spans: Array<Omit<OtlpSpan, 'service'>> }>;
        }>;
      };
      for (const resourceSpans of payload.resourceSpans) {
        const resource = Object.fromEntries(
          resourceSpans.resource.attributes.map((a) => [a.key, Object.values(a.value)[0]]),
        );
        resources.push(resource);
        const service = String(resource['service.name'] ?? '');
        for (const scope of resourceSpans.scopeSpans) for (const span of scope.spans) spans.push({ ...span, service });
      }
      response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    spans,
    resources,
    endpoint,
    tracesUrl: `${endpoint}/v1/traces`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

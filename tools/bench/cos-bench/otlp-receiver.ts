// The tracing benchmark's OTLP/HTTP receiver, run as its own process: accepts POST /v1/traces
// (protobuf or JSON, optionally gzip), counts the spans, answers 200 with an empty export response
// in the request's encoding. GET /count returns {"spans": n, "requests": n, "rejected": n,
// "protobuf": n, "json": n} (the last two count requests). Prints `listening <port>` once bound.
// It stands in for a collector (Jaeger accepts the same requests), so the exporter does its full
// work, HTTP included. Standalone under tsx: no workspace imports.
import { createServer } from 'node:http';
import { gunzipSync } from 'node:zlib';
import protobuf from 'protobufjs';

interface ExportRequest {
  resourceSpans?: { scopeSpans?: { spans?: unknown[] }[] }[];
}

// Just the nesting of the OTLP trace request down to its spans; protobuf skips every other field.
const ExportTraceServiceRequest = protobuf
  .parse(
    `syntax = "proto3";
    message ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
    message ResourceSpans { repeated ScopeSpans scope_spans = 2; }
    message ScopeSpans { repeated Span spans = 2; }
    message Span {}`,
  )
  .root.lookupType('ExportTraceServiceRequest');

const DECODERS: Record<string, { decode(body: Buffer): ExportRequest; answer: string | Buffer }> = {
  'application/x-protobuf': {
    decode: (body) => ExportTraceServiceRequest.decode(body) as ExportRequest,
    answer: Buffer.alloc(0),
  },
  'application/json': { decode: (body) => JSON.parse(body.toString('utf8')) as ExportRequest, answer: '{}' },
};

let spans = 0;
let requests = 0;
let rejected = 0;
const byEncoding = { protobuf: 0, json: 0 };

const server = createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/count') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ spans, requests, rejected, ...byEncoding }));
    return;
  }
  if (req.method !== 'POST' || req.url !== '/v1/traces') {
    res.writeHead(404).end();
    return;
  }
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => {
    const contentType = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    const decoder = DECODERS[contentType];
    try {
      if (decoder === undefined) throw new Error(`unsupported content type ${contentType}`);
      let body = Buffer.concat(chunks);
      if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body);
      const parsed = decoder.decode(body);
      for (const resource of parsed.resourceSpans ?? []) {
        for (const scope of resource.scopeSpans ?? []) spans += scope.spans?.length ?? 0;
      }
      requests++;
      byEncoding[contentType === 'application/json' ? 'json' : 'protobuf']++;
      res.writeHead(200, { 'content-type': contentType });
      res.end(decoder.answer);
    } catch {
      rejected++;
      res.writeHead(decoder === undefined ? 415 : 400).end();
    }
  });
});

server.listen(Number(process.env['PORT'] ?? 0), '127.0.0.1', () => {
  const address = server.address();
  console.log(`listening ${typeof address === 'object' && address ? address.port : 0}`);
});
process.once('SIGTERM', () => process.exit(0));

// The tracing benchmark's OTLP/HTTP receiver, run as its own process: accepts POST /v1/traces
// (JSON, optionally gzip), counts the spans, answers 200 with an empty export response. GET /count
// returns {"spans": n, "requests": n}. Prints `listening <port>` once bound. It stands in for a
// collector (Jaeger accepts the same requests), so the exporter does its full work, HTTP included.
import { createServer } from 'node:http';
import { gunzipSync } from 'node:zlib';

interface ExportRequest {
  resourceSpans?: { scopeSpans?: { spans?: unknown[] }[] }[];
}

let spans = 0;
let requests = 0;
let rejected = 0;

const server = createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/count') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ spans, requests, rejected }));
    return;
  }
  if (req.method !== 'POST' || req.url !== '/v1/traces') {
    res.writeHead(404).end();
    return;
  }
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => {
    try {
      let body = Buffer.concat(chunks);
      if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body);
      // Only JSON is counted: the OTLP/HTTP exporter COS uses sends JSON.
      const parsed = JSON.parse(body.toString('utf8')) as ExportRequest;
      for (const resource of parsed.resourceSpans ?? []) {
        for (const scope of resource.scopeSpans ?? []) spans += scope.spans?.length ?? 0;
      }
      requests++;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    } catch {
      rejected++;
      res.writeHead(400).end();
    }
  });
});

server.listen(Number(process.env['PORT'] ?? 0), '127.0.0.1', () => {
  const address = server.address();
  console.log(`listening ${typeof address === 'object' && address ? address.port : 0}`);
});
process.once('SIGTERM', () => process.exit(0));

// --http-cost: ProcessCommand over the HTTP/JSON front end against gRPC: the same cos-server
// build twice, the second with COS_SERVER_PROTOCOL=both, called over HTTP/1.1 keep-alive
// connections with upstream's JSON, the first over gRPC. Section `http`.
import { freePort } from '../processes.js';
import { startSecondCos, type Bench, type Cell, type Mode } from '../run.js';
import { reportSideBySide } from '../report-support.js';

export const httpCostMode: Mode = {
  flag: 'http-cost',
  systems: ['cos', 'http'],
  docSection: 'http',
  async start(bench) {
    // the load calls its HTTP/JSON front end: that port is the one it targets
    const httpPort = await freePort();
    await startSecondCos(bench, 'http', 'http', {
      COS_SERVER_PROTOCOL: 'both',
      COS_HTTP_ADDRESS: '127.0.0.1',
      COS_HTTP_PORT: String(httpPort),
    });
    bench.systems.set('http', { ...bench.systems.get('http')!, target: `127.0.0.1:${httpPort}` });
  },
  loadExtras: (_bench, system) => ({ http: system === 'http' }),
  report: reportHttp,
};

function reportHttp(bench: Bench, cells: Cell[]): void {
  reportSideBySide(bench, cells, {
    before: 'cos',
    after: 'http',
    column: 'front end',
    names: { before: 'gRPC', after: 'HTTP/JSON' },
    heading: `## ProcessCommand over the HTTP/JSON front end against gRPC, Node ${process.versions.node.split('.')[0]}`,
    run: [
      'Run: `npx nx run @chiefofstate/cos-server:build && npx tsx tools/bench/cos-bench.ts --http-cost`',
      '(options as for `--tracing-cost`). The same cos-server build twice, side by side on one handler, load',
      'client and PostgreSQL, each on its own schema, cell after cell: one called over gRPC (one HTTP/2',
      'connection, stock grpc-js), the other on its HTTP/JSON front end (COS_SERVER_PROTOCOL=both) with',
      "upstream's JSON, `POST /v1/commands/{id}/process` `{\"command\": <base64 Any>}`, over HTTP/1.1",
      'keep-alive connections, one per caller (node:http).',
    ],
  });
}

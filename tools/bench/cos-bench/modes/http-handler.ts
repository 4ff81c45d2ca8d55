// --http-handler: the same cos-server calling the write handler over HTTP/JSON
// (COS_WRITE_SIDE_PROTOCOL=http) against over gRPC: one handler process speaking both.
// Section `http-handler`.
import { startSecondCos, type Bench, type Cell, type Mode } from '../run.js';
import { reportHops } from '../report-support.js';

export const httpHandlerMode: Mode = {
  flag: 'http-handler',
  systems: ['cos', 'httpHandler'],
  docSection: 'http-handler',
  handlerEnv: () => ({ HANDLER_HTTP: '1' }),
  async start(bench) {
    const handlerHttpPort = Number((await bench.handler!.waitFor(/http-listening (\d+)/))[1]);
    await startSecondCos(bench, 'httpHandler', 'http-handler', {
      WRITE_SIDE_HANDLER_SERVICE_PORT: String(handlerHttpPort),
      COS_WRITE_SIDE_PROTOCOL: 'http',
    });
  },
  report: reportHttpHandler,
};

function reportHttpHandler(bench: Bench, cells: Cell[]): void {
  reportHops(bench, cells, {
    after: 'httpHandler',
    column: 'write handler',
    names: { cos: 'gRPC', after: 'HTTP' },
    note: 'Handler CPU is the one handler process, which serves both protocols (grpc-js for gRPC, node:http for HTTP).',
    heading: `## ProcessCommand with an HTTP write handler against a gRPC one, Node ${process.versions.node.split('.')[0]}`,
    run: [
      'Run: `npx nx run @chiefofstate/cos-server:build && npx tsx tools/bench/cos-bench.ts --http-handler`',
      '(options as for `--tracing-cost`). Two cos-servers side by side on one handler process, load client',
      'and PostgreSQL, each on its own schema: one calling the handler over gRPC (one HTTP/2 connection),',
      'the other over the HTTP handler protocol (COS_WRITE_SIDE_PROTOCOL=http: JSON with base64 Anys over',
      'HTTP/1.1 keep-alive connections, one per call in flight). Each command is two handler calls.',
    ],
  });
}

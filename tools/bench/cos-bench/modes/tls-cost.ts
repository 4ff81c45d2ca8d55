// --tls-cost: the same cos-server with TLS on both hops against TLS off: the load calls it over
// TLS and it calls the handler over TLS (the handler serves a plaintext and a TLS port).
// Certificates from a throwaway CA (EC P-256). Section `tls`.
import { createTestPki } from '@chiefofstate/testing';
import { startSecondCos, type Bench, type Cell, type Mode } from '../run.js';
import { reportHops } from '../report-support.js';

/** the certificate both servers (cos-server and the handler) present */
let served: { certFile: string; keyFile: string } | undefined;

export const tlsCostMode: Mode = {
  flag: 'tls-cost',
  systems: ['cos', 'tls'],
  docSection: 'tls',
  handlerEnv(bench) {
    bench.pki = createTestPki('cos-bench-');
    served = bench.pki.issue({ name: 'localhost', usage: 'server' });
    return { HANDLER_TLS_CERT_FILE: served.certFile, HANDLER_TLS_KEY_FILE: served.keyFile };
  },
  async start(bench) {
    const handlerTlsPort = Number((await bench.handler!.waitFor(/tls-listening (\d+)/))[1]);
    await startSecondCos(bench, 'tls', 'tls', {
      COS_TLS_CERT_FILE: served!.certFile,
      COS_TLS_KEY_FILE: served!.keyFile,
      WRITE_SIDE_HANDLER_SERVICE_HOST: 'localhost',
      WRITE_SIDE_HANDLER_SERVICE_PORT: String(handlerTlsPort),
      COS_WRITE_SIDE_USE_TLS: 'true',
      COS_WRITE_SIDE_TLS_CA_FILE: bench.pki!.caFile,
    });
  },
  loadExtras: (bench, system) => (system === 'tls' && bench.pki ? { tlsCa: bench.pki.ca } : {}),
  report: reportTls,
};

function reportTls(bench: Bench, cells: Cell[]): void {
  reportHops(bench, cells, {
    after: 'tls',
    column: 'TLS',
    names: { cos: 'off', after: 'both hops' },
    note: 'Connections are long-lived, so this is the cost of encrypting the bytes, not of handshakes.',
    heading: `## Cost of TLS on ProcessCommand, Node ${process.versions.node.split('.')[0]}`,
    run: [
      'Run: `npx tsx tools/bench/cos-bench.ts --tls-cost` (options as for `--tracing-cost`). Two cos-servers',
      'side by side on one handler process, load client and PostgreSQL, each on its own schema: one all',
      'plaintext; the other serving over TLS (COS_TLS_CERT_FILE, an EC P-256 certificate) and calling the',
      'handler over TLS (COS_WRITE_SIDE_USE_TLS, COS_WRITE_SIDE_TLS_CA_FILE). PostgreSQL stays plaintext.',
    ],
  });
}

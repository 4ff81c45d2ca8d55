// --idempotency-cost: the same cos-server build twice, the load sending a fresh
// `x-cos-idempotency-key` on every call to the second (`keyed`) and none to the first.
// Section `idempotency`.
import { startSecondCos, type Bench, type Cell, type Mode } from '../run.js';
import { reportSideBySide } from '../report-support.js';

export const idempotencyCostMode: Mode = {
  flag: 'idempotency-cost',
  systems: ['cos', 'keyed'],
  docSection: 'idempotency',
  async start(bench) {
    await startSecondCos(bench, 'keyed', 'keyed');
  },
  loadExtras: (_bench, system) => ({ idempotencyKeys: system === 'keyed' }),
  report: reportIdempotency,
};

function reportIdempotency(bench: Bench, cells: Cell[]): void {
  reportSideBySide(bench, cells, {
    before: 'cos',
    after: 'keyed',
    column: 'calls',
    names: { before: 'no key', after: 'with key' },
    cost: 'cost under 10%',
    limit: 0.1,
    heading: `## Cost of idempotency keys on ProcessCommand, Node ${process.versions.node.split('.')[0]}`,
    run: [
      'Run: `npx nx run @chiefofstate/cos-server:build && npx tsx tools/bench/cos-bench.ts --idempotency-cost`',
      '(options as for `--tracing-cost`). The same cos-server build twice, side by side on one handler, load',
      'client and PostgreSQL, each on its own schema, cell after cell: one called without a key, the other',
      'with a fresh `x-cos-idempotency-key` on every call (so every command records its key and reply in',
      'its append transaction, and every key is new: the lookup path of a first call, not of a retry).',
    ],
  });
}

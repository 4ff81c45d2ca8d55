// --baseline=DIR: the cos-server built in another checkout DIR against this one, side by side on
// the same handler, load client and PostgreSQL: what a change costs. Section `baseline`.
import { COS_MAIN, startSecondCos, type Bench, type Cell, type Mode } from '../run.js';
import { reportSideBySide } from '../report-support.js';

export const baselineMode: Mode = {
  flag: 'baseline',
  systems: ['baseline', 'cos'],
  docSection: 'baseline',
  async start(bench) {
    await startSecondCos(bench, 'baseline', 'baseline', {}, bench.options.baselineMain ?? COS_MAIN);
  },
  report: reportBaseline,
};

/** --baseline: this build against the baseline's, paired ratios within each repeat. */
function reportBaseline(bench: Bench, cells: Cell[]): void {
  reportSideBySide(bench, cells, {
    before: 'baseline',
    after: 'cos',
    column: 'build',
    names: { before: 'baseline', after: 'this' },
    cost: 'cost under 5%',
    limit: 0.05,
    heading: `## Cost of a change on ProcessCommand: this build against a baseline, Node ${process.versions.node.split('.')[0]}`,
    run: [
      'Run: build this checkout and the baseline checkout (e.g. `git worktree add ../baseline <commit>`, then',
      '`npm ci` and `npx nx run @chiefofstate/cos-server:build` in each), then',
      '`npx tsx tools/bench/cos-bench.ts --baseline=../baseline` (options as for `--tracing-cost`).',
      'The two cos-servers run side by side on one handler, load client and PostgreSQL, each on its own',
      'schema, cell after cell.',
    ],
  });
}

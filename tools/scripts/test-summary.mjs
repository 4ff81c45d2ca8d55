// Sums the vitest JSON reports of every project (packages, apps, tools) into one closing line,
// `N passed, N failed`, so a whole-workspace run ends with a single verdict.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';

let passed = 0;
let failed = 0;
let skipped = 0;
const projects = [];
const dirs = ['tools'];
for (const group of ['packages', 'apps']) {
  if (existsSync(group)) dirs.push(...readdirSync(group).map((name) => join(group, name)));
}
for (const dir of dirs) {
  const file = join(dir, 'test-results', 'vitest.json');
  if (!existsSync(file)) continue;
  const report = JSON.parse(readFileSync(file, 'utf8'));
  passed += report.numPassedTests;
  failed += report.numFailedTests;
  skipped += report.numPendingTests + (report.numTodoTests ?? 0);
  projects.push(`${basename(dir)}: ${report.numPassedTests}/${report.numTotalTests}`);
}
console.log(projects.join(', '));
console.log(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exitCode = failed > 0 ? 1 : 0;

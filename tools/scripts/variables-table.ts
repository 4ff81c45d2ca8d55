// Writes the table of every COS variable (CONFIG_VARIABLES of @chiefofstate/config) into
// Markdown files, between `<!-- variables:start -->` and `<!-- variables:end -->`.
//
//   npx tsx tools/scripts/variables-table.ts            # rewrites docs/deployment.md
//   npx tsx tools/scripts/variables-table.ts --check    # exit 1 when a file is out of date
//   npx tsx tools/scripts/variables-table.ts [--check] FILE...
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { CONFIG_VARIABLES } from '@chiefofstate/config';

const START = '<!-- variables:start -->';
const END = '<!-- variables:end -->';
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** The table, in the format of packages/config/README.md and docs/configuration.md. */
export function formatVariableTable(): string {
  const cell = (text: string) => text.replaceAll('|', '\\|');
  const code = (name: string) => `\`${name}\``;
  const rows = CONFIG_VARIABLES.map(
    (variable) =>
      `| ${code(variable.name)} | ${variable.aliases.map(code).join(', ')} | ${cell(variable.default)} | ${cell(variable.meaning)} |`,
  );
  return ['| variable | alias | default | meaning |', '|---|---|---|---|', ...rows].join('\n');
}

/** `text` with the table between the markers replaced; throws when the markers are missing. */
export function withVariableTable(text: string, file: string): string {
  const start = text.indexOf(START);
  const end = text.indexOf(END);
  if (start < 0 || end < start) throw new Error(`${file}: no ${START} ... ${END} section`);
  return `${text.slice(0, start + START.length)}\n${formatVariableTable()}\n${text.slice(end)}`;
}

function main(args: readonly string[]): number {
  const { values, positionals: files } = parseArgs({ args: [...args], options: { check: { type: 'boolean', default: false } }, allowPositionals: true });
  const check = values.check;
  const targets = files.length > 0 ? files : [`${ROOT}docs/deployment.md`];
  let stale = 0;
  for (const file of targets) {
    const text = readFileSync(file, 'utf8');
    const updated = withVariableTable(text, file);
    if (updated === text) continue;
    if (check) {
      process.stderr.write(`${file}: the variable table is out of date; run npx tsx tools/scripts/variables-table.ts\n`);
      stale++;
    } else {
      writeFileSync(file, updated);
      process.stdout.write(`${file}: variable table updated\n`);
    }
  }
  return stale > 0 ? 1 : 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) process.exit(main(process.argv.slice(2)));

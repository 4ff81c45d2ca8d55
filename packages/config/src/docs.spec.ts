import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { formatVariableTable } from './variables.js';

const DOCS = {
  'packages/config/README.md': new URL('../README.md', import.meta.url),
  'docs/configuration.md': new URL('../../../docs/configuration.md', import.meta.url),
};

describe('documentation', () => {
  it.each(Object.entries(DOCS))('%s holds the variable table of src/variables.ts', (_name, url) => {
    const text = readFileSync(url, 'utf8');
    const table = /<!-- variables:start -->\n([\s\S]*?)\n<!-- variables:end -->/.exec(text)?.[1];
    // on failure: paste formatVariableTable() between the markers
    expect(table).toBe(formatVariableTable());
  });
});

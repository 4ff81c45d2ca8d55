import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createProjectGraphAsync } from '@nx/devkit';
import { ESLint } from 'eslint';
import { beforeAll, describe, expect, it } from 'vitest';

// The layer rule of eslint.config.mjs, run on code that exists only here: each case lints a
// text as if it were a file at that path, so nothing broken is ever committed as source.
const workspaceRoot = fileURLToPath(new URL('../..', import.meta.url));
const RULE = '@nx/enforce-module-boundaries';
const adapterImport = "import { createJournal } from '@chiefofstate/journal';\n\nexport const journal = createJournal;\n";

let eslint: ESLint;

beforeAll(async () => {
  // the rule reads the cached project graph and skips itself without one: build or refresh it
  await createProjectGraphAsync({ exitOnError: false });
  eslint = new ESLint({ cwd: workspaceRoot });
}, 60_000);

async function boundaryErrors(path: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath: join(workspaceRoot, path) });
  return result!.messages.filter((message) => message.ruleId === RULE).map((message) => message.message);
}

describe('module boundaries', () => {
  it('refuse an adapter in the source of an orchestration package', async () => {
    for (const path of ['packages/read-side/src/boundary-fixture.ts', 'packages/entity/src/boundary-fixture.ts']) {
      const errors = await boundaryErrors(path, adapterImport);
      expect(errors, path).toHaveLength(1);
      expect(errors[0]).toContain('A project tagged with "layer:orchestration" can only depend on libs tagged with');
    }
  });

  it('let orchestration tests and their support wire real adapters', async () => {
    for (const path of [
      'packages/read-side/src/boundary-fixture.spec.ts',
      'packages/read-side/src/boundary-fixture.int.spec.ts',
      'packages/entity/src/test-support/boundary-fixture.ts',
    ]) {
      expect(await boundaryErrors(path, adapterImport), path).toEqual([]);
    }
  });

  it('let composition and the apps import adapters and orchestration', async () => {
    const code = `${adapterImport}export { createReadSideEngine } from '@chiefofstate/read-side';\n`;
    for (const path of ['packages/composition/src/boundary-fixture.ts', 'apps/cos-readside/src/boundary-fixture.ts']) {
      expect(await boundaryErrors(path, code), path).toEqual([]);
    }
  });

  it('refuse composition below the apps', async () => {
    const code = "export { startReadSides } from '@chiefofstate/composition';\n";
    expect(await boundaryErrors('packages/grpc-api/src/boundary-fixture.ts', code)).toHaveLength(1);
    expect(await boundaryErrors('packages/read-side/src/boundary-fixture.ts', code)).toHaveLength(1);
    expect(await boundaryErrors('apps/cos-server/src/boundary-fixture.ts', code)).toEqual([]);
  });
});

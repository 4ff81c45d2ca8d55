// One lint config for the whole workspace. Layering is enforced by Nx module boundaries:
// protocol <- core <- adapter <- orchestration <- edge <- composition <- app, each depending only
// downwards (or sideways within its own layer). Orchestration sees adapters only through the
// ports it declares: the adapters are built and handed in by composition and the apps, and only
// its tests may wire real ones. tools/lint-rules.spec.ts proves the rule rejects a violation.
import js from '@eslint/js';
import nx from '@nx/eslint-plugin';
import tseslint from 'typescript-eslint';
import globals from 'globals';

/** Test code: specs and their helpers (test-support/ and test/ are left out of the builds). */
const testFiles = ['**/*.spec.ts', '**/test-support/**/*.ts', '**/test/**/*.ts'];

/**
 * The layer rule; `inTests` lets orchestration tests wire real adapters.
 * @param {boolean} inTests
 */
function moduleBoundaries(inTests) {
  const below = {
    protocol: ['layer:protocol'],
    testing: ['layer:protocol', 'layer:core', 'layer:adapter', 'layer:testing'],
    core: ['layer:protocol', 'layer:core', 'layer:testing'],
    adapter: ['layer:protocol', 'layer:core', 'layer:adapter', 'layer:testing'],
    orchestration: ['layer:protocol', 'layer:core', 'layer:orchestration', 'layer:testing', ...(inTests ? ['layer:adapter'] : [])],
    edge: ['layer:protocol', 'layer:core', 'layer:adapter', 'layer:orchestration', 'layer:edge', 'layer:testing'],
    composition: ['layer:protocol', 'layer:core', 'layer:adapter', 'layer:orchestration', 'layer:composition', 'layer:testing'],
  };
  below.app = [...below.edge, 'layer:composition'];
  // launchers (the quickstart) compose whole apps in one process
  below.launcher = [...below.app, 'layer:app'];
  return [
    'error',
    {
      enforceBuildableLibDependency: false,
      allow: [],
      depConstraints: [
        ...Object.entries(below).map(([layer, tags]) => ({ sourceTag: `layer:${layer}`, onlyDependOnLibsWithTags: tags })),
        { sourceTag: 'layer:tools', onlyDependOnLibsWithTags: ['*'] },
      ],
    },
  ];
}

export default tseslint.config(
  {
    ignores: ['**/dist/**', '**/node_modules/**', '**/src/gen/**', '**/.nx/**', '**/.cos-data/**'],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    // plain JavaScript scripts run on Node
    files: ['**/*.js', '**/*.mjs'],
    languageOptions: { globals: globals.node },
  },
  {
    files: ['**/*.ts', '**/*.mts', '**/*.js', '**/*.mjs'],
    plugins: { '@nx': nx },
    rules: {
      '@nx/enforce-module-boundaries': moduleBoundaries(false),
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // Libraries and apps export names, never defaults (config files must default-export).
    files: ['**/src/**/*.ts'],
    rules: {
      'no-restricted-syntax': [
        'error',
        { selector: 'ExportDefaultDeclaration', message: 'Use named exports; no default exports.' },
      ],
    },
  },
  {
    files: testFiles,
    rules: { '@nx/enforce-module-boundaries': moduleBoundaries(true) },
  },
  {
    // Build and test configuration shares settings from the workspace root by path.
    files: ['**/vitest.config.ts'],
    rules: { '@nx/enforce-module-boundaries': 'off' },
  },
  {
    files: ['**/*.spec.ts', '**/test/**/*.ts', 'tools/**/*.ts'],
    rules: {
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
);

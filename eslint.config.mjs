// One lint config for the whole workspace. Layering is enforced by Nx module boundaries:
// protocol <- core <- adapter <- orchestration <- edge <- app, each depending only downwards
// (or sideways within its own layer, for adapters and orchestration).
import js from '@eslint/js';
import nx from '@nx/eslint-plugin';
import tseslint from 'typescript-eslint';
import globals from 'globals';

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
      '@nx/enforce-module-boundaries': [
        'error',
        {
          enforceBuildableLibDependency: false,
          allow: [],
          depConstraints: [
            { sourceTag: 'layer:protocol', onlyDependOnLibsWithTags: ['layer:protocol'] },
            { sourceTag: 'layer:testing', onlyDependOnLibsWithTags: ['layer:protocol', 'layer:core', 'layer:adapter', 'layer:testing'] },
            { sourceTag: 'layer:core', onlyDependOnLibsWithTags: ['layer:protocol', 'layer:core', 'layer:testing'] },
            {
              sourceTag: 'layer:adapter',
              onlyDependOnLibsWithTags: ['layer:protocol', 'layer:core', 'layer:adapter', 'layer:testing'],
            },
            {
              sourceTag: 'layer:orchestration',
              onlyDependOnLibsWithTags: ['layer:protocol', 'layer:core', 'layer:adapter', 'layer:orchestration', 'layer:testing'],
            },
            {
              sourceTag: 'layer:edge',
              onlyDependOnLibsWithTags: [
                'layer:protocol',
                'layer:core',
                'layer:adapter',
                'layer:orchestration',
                'layer:edge',
                'layer:testing',
              ],
            },
            {
              sourceTag: 'layer:app',
              onlyDependOnLibsWithTags: [
                'layer:protocol',
                'layer:core',
                'layer:adapter',
                'layer:orchestration',
                'layer:edge',
                'layer:testing',
              ],
            },
            {
              // launchers (the quickstart) compose whole apps in one process
              sourceTag: 'layer:launcher',
              onlyDependOnLibsWithTags: [
                'layer:protocol',
                'layer:core',
                'layer:adapter',
                'layer:orchestration',
                'layer:edge',
                'layer:app',
                'layer:testing',
              ],
            },
            { sourceTag: 'layer:tools', onlyDependOnLibsWithTags: ['*'] },
          ],
        },
      ],
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

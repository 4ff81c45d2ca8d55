import { defaultServerConditions } from 'vite';
import { defineConfig, type ViteUserConfig } from 'vitest/config';

/**
 * Shared vitest settings: workspace packages are resolved to their TypeScript sources
 * (the `@chiefofstate/source` export condition), so tests never need a prior build.
 */
export function createVitestConfig(overrides: ViteUserConfig['test'] = {}): ViteUserConfig {
  return defineConfig({
    resolve: { conditions: ['@chiefofstate/source', ...defaultServerConditions] },
    ssr: { resolve: { conditions: ['@chiefofstate/source', ...defaultServerConditions] } },
    test: {
      include: ['src/**/*.spec.ts', 'test/**/*.spec.ts'],
      testTimeout: 30_000,
      hookTimeout: 60_000,
      // The JSON report feeds the workspace's one-line summary (tools/scripts/test-summary.mjs).
      reporters: ['default', 'json'],
      outputFile: { json: 'test-results/vitest.json' },
      ...overrides,
    },
  });
}

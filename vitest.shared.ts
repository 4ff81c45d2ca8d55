import { defineConfig, type ViteUserConfig } from 'vitest/config';

// Vite's server conditions without `module`: that one selects builds meant for bundlers (e.g.
// @opentelemetry/api's extensionless ESM), which Node itself cannot load.
const conditions = ['@chiefofstate/source', 'node', 'development|production'];

/**
 * Shared vitest settings: workspace packages are resolved to their TypeScript sources
 * (the `@chiefofstate/source` export condition), so tests never need a prior build.
 */
export function createVitestConfig(overrides: ViteUserConfig['test'] = {}): ViteUserConfig {
  return defineConfig({
    resolve: { conditions },
    ssr: { resolve: { conditions } },
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

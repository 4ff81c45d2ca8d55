#!/usr/bin/env bash
# Scaffolds a workspace package the way every package here is laid out.
# usage: tools/scripts/new-package.sh packages|apps NAME LAYER "one-line description"
set -euo pipefail
kind=$1 name=$2 layer=$3 desc=$4
dir="$kind/$name"
mkdir -p "$dir/src"
cat > "$dir/package.json" <<JSON
{
  "name": "@chiefofstate/$name",
  "version": "0.1.0",
  "description": "$desc",
  "license": "MIT",
  "type": "module",
  "sideEffects": false,
  "exports": {
    ".": {
      "@chiefofstate/source": "./src/index.ts",
      "types": "./dist/index.d.ts",
      "default": "./dist/index.js"
    }
  },
  "files": ["dist", "src", "!**/*.spec.ts"],
  "scripts": {
    "build": "tsc -p tsconfig.lib.json",
    "typecheck": "tsc -p tsconfig.json --noEmit",
    "lint": "eslint .",
    "test": "vitest run"
  },
  "nx": { "tags": ["layer:$layer"] },
  "dependencies": {}
}
JSON
cat > "$dir/tsconfig.json" <<JSON
{
  "extends": "../../tsconfig.base.json",
  "compilerOptions": { "noEmit": true },
  "include": ["src/**/*.ts", "test/**/*.ts", "vitest.config.ts"]
}
JSON
cat > "$dir/tsconfig.lib.json" <<JSON
{
  "extends": "../../tsconfig.base.json",
  "compilerOptions": {
    "rootDir": "src",
    "outDir": "dist",
    "customConditions": [],
    "tsBuildInfoFile": "dist/.tsbuildinfo"
  },
  "include": ["src/**/*.ts"],
  "exclude": ["src/**/*.spec.ts", "src/**/test-support/**"]
}
JSON
cat > "$dir/vitest.config.ts" <<TS
import { createVitestConfig } from '../../vitest.shared.js';

export default createVitestConfig();
TS
[ -f "$dir/src/index.ts" ] || echo "export {};" > "$dir/src/index.ts"
[ -f "$dir/README.md" ] || printf '# @chiefofstate/%s\n\n%s\n' "$name" "$desc" > "$dir/README.md"
echo "created $dir"

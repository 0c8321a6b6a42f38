# Sourced by provision.sh and build-image.sh: `docker build` with the classic builder, and what it leaves.
#
# The classic builder (DOCKER_BUILDKIT=0: Debian's docker.io 20.10 CLI has no buildx) runs each step after
# an image's VOLUME line in a container, which gets an anonymous volume for every VOLUME path; the step's
# container is removed, its volumes are not. Each build of such an image (mariadb, moodle, postgres, the
# sidecar) left a few unlabelled, unused volumes behind for good.

# Where provision.sh records this checkout's test image tags (read by the test harness and build-image.sh).
TEST_IMAGES_FILE=".tmp/test-images"
# The node the tests run the CLI with (scripts/provision.sh, ensure_cli_node).
CLI_NODE_FILE=".tmp/cli-node"

# legacy_build ARGS...: DOCKER_BUILDKIT=0 docker build ARGS, then removes the anonymous volumes the build
# left. --force-rm: a failed step's container would otherwise stay, holding its volumes. Returns the build's
# exit status.
legacy_build() {
  local before rc=0
  before="$(docker volume ls -q)"
  DOCKER_BUILDKIT=0 docker build --force-rm "$@" || rc=$?
  remove_new_anonymous_volumes "$before"
  return "$rc"
}

# remove_new_anonymous_volumes BEFORE: removes the volumes that are not in the list BEFORE, that no container
# uses, that carry no label and that have an anonymous volume's name (64 hex digits). Other runs' volumes are
# named or labelled (Compose, the tests), in use, or older than the build; a volume a container takes up
# in the meantime is refused by `docker volume rm` (no -f) and stays.
remove_new_anonymous_volumes() {
  local before="$1" v
  while read -r v; do
    [[ "$v" =~ ^[0-9a-f]{64}$ ]] || continue
    grep -qxF "$v" <<<"$before" && continue
    [ "$(docker volume inspect -f '{{len .Labels}}' "$v" 2>/dev/null)" = 0 ] || continue
    docker volume rm "$v" >/dev/null 2>&1 || true
  done < <(docker volume ls -q --filter dangling=true)
}

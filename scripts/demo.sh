#!/usr/bin/env bash
# The first command to run (`npm run demo`): on a fresh Debian machine without a container registry it
#   1. provisions what it needs (scripts/provision.sh: Docker, docker-compose, the local mbs-test/* images),
#   2. builds the sidecar image (scripts/build-image.sh, cached by a hash of its inputs),
#   3. starts a small Moodle-like stack with the sidecar beside it (scripts/demo/compose.yml),
#   4. puts a course into the database and a file into the dataroot, backs up, lists the snapshot,
#   5. deletes the file and puts it back alone (`restore latest --path`, nothing stopped),
#   6. damages the site (drops the table, deletes the file), restores the snapshot and shows both back.
# The stack is left running to look at; `npm run demo -- down` (or `bash scripts/demo.sh down`) removes it
# with its volumes. Exit status 0 only when the restored data equal what was backed up.
#
# Environment: DEMO_PROJECT (compose project, default mbs-demo), IMAGE (sidecar image tag, default
# moodle-backup-sidecar:dev), DEMO_DOWN=1 removes the stack at the end.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROJECT="${DEMO_PROJECT:-mbs-demo}"
export IMAGE="${IMAGE:-moodle-backup-sidecar:dev}"
FILE="$ROOT/scripts/demo/compose.yml"
ROOT_PW=demo-root-pw # as in compose.yml
COURSES="1 Welcome to Moodle|2 Backups for beginners|3 Restoring a site"

# Headings in bold on a terminal only.
if [ -t 1 ]; then B=$'\033[1m' N=$'\033[0m'; else B='' N=''; fi
say() { printf '\n%s==> %s%s  [%d s]\n' "$B" "$*" "$N" "$SECONDS"; }
die() { printf 'demo: ERROR: %s\n' "$*" >&2; exit 1; }

# Compose v2 (`docker compose`) where installed, else v1 (`docker-compose`, what provision.sh installs).
compose() {
  if docker compose version >/dev/null 2>&1; then docker compose -p "$PROJECT" -f "$FILE" "$@"
  else docker-compose -p "$PROJECT" -f "$FILE" "$@"; fi
}
container() { compose ps -q "$1"; }
# A terminal gets the sidecar's human log lines and progress; a pipe gets JSON lines.
tty_flag() { [ -t 1 ] && printf -- '-t' || true; }
sidecar() { docker exec $(tty_flag) "$(container backup)" "$@"; }
sql() { docker exec "$(container mariadb)" mariadb -uroot -p"$ROOT_PW" -N -B bitnami_moodle -e "$1"; }
courses() { sql 'SELECT id, fullname FROM mdl_course ORDER BY id' 2>/dev/null | tr '\t' ' ' | paste -sd'|' || true; }
material() { docker exec "$(container moodle)" sh -c 'cat /bitnami/moodledata/filedir/*/*/* 2>/dev/null' || true; }

down() {
  say "removing the demo stack $PROJECT (containers, network, volumes)"
  compose down -v --remove-orphans
}

if [ "${1:-}" = down ]; then down; exit 0; fi
[ $# -eq 0 ] || die "usage: scripts/demo.sh [down]"

say "provisioning: Docker, docker-compose and the local test images (cached after the first run)"
bash "$ROOT/scripts/provision.sh"
say "building the sidecar image $IMAGE (cached by a hash of its inputs)"
bash "$ROOT/scripts/build-image.sh"

if [ -n "$(compose ps -q 2>/dev/null)" ]; then
  say "an earlier demo stack $PROJECT exists: removing it first"
  compose down -v --remove-orphans
fi
say "starting the stack: mariadb, moodle and the backup sidecar (project $PROJECT)"
compose up -d
for i in $(seq 1 120); do
  sql 'SELECT 1' >/dev/null 2>&1 && break
  [ "$i" -lt 120 ] || die "MariaDB did not answer within 60 s: $(docker logs --tail 20 "$(container mariadb)" 2>&1)"
  sleep 0.5
done

say "installing the site: Moodle's version in mdl_config, three courses in mdl_course, a file in the dataroot"
# The stand-in's admin/cli/upgrade.php reads the installed version from mdl_config, as Moodle's does.
sql "CREATE TABLE mdl_config (id BIGINT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(190) NOT NULL UNIQUE, value LONGTEXT NOT NULL);
     INSERT INTO mdl_config (name, value) VALUES ('version', '2024100700.00'), ('release', '4.5 (Build: 20241007)');
     CREATE TABLE mdl_course (id BIGINT PRIMARY KEY, fullname VARCHAR(254) NOT NULL);
     INSERT INTO mdl_course VALUES $(IFS='|'; for c in $COURSES; do printf "(%s, '%s')," "${c%% *}" "${c#* }"; done | sed 's/,$//');"
docker exec "$(container moodle)" bash -c '
  body="Course material: how to back up a Moodle site."
  h=$(printf "%s" "$body" | sha1sum | cut -c1-40)   # Moodle names pool files by their SHA-1
  mkdir -p "/bitnami/moodledata/filedir/${h:0:2}/${h:2:2}"
  printf "%s" "$body" >"/bitnami/moodledata/filedir/${h:0:2}/${h:2:2}/$h"'
want_courses="$(courses)"
want_material="$(material)"
echo "courses:  $want_courses"
echo "file:     $want_material"

say "backup: docker exec <sidecar> backup"
sidecar backup
say "the snapshot: docker exec <sidecar> snapshots"
sidecar snapshots

say "a file deleted by mistake, put back alone: docker exec <sidecar> restore latest --path <file> (nothing stops)"
file="$(docker exec "$(container moodle)" sh -c 'cd /bitnami/moodledata && find filedir -type f | head -n 1')"
docker exec "$(container moodle)" rm "/bitnami/moodledata/$file"
echo "file:     $(material)"
sidecar restore latest --path "$file"
echo "file:     $(material)"
[ "$(material)" = "$want_material" ] || die "restore --path did not put $file back"

say "damaging the site: dropping the course table, deleting the course file"
sql 'DROP TABLE mdl_course'
docker exec "$(container moodle)" sh -c 'rm -rf /bitnami/moodledata/filedir/*'
echo "courses:  $(courses)"
echo "file:     $(material)"

say "restore: docker exec <sidecar> restore latest --yes"
sidecar restore latest --yes

say "after the restore"
got_courses="$(courses)"
got_material="$(material)"
echo "courses:  $got_courses"
echo "file:     $got_material"
[ "$got_courses" = "$want_courses" ] || die "the courses are not back: '$got_courses' (backed up: '$want_courses')"
[ "$got_material" = "$want_material" ] || die "the course file is not back"
echo "demo: the course table and the course file are back."

if [ -n "${DEMO_DOWN:-}" ]; then down; else
  say "the stack keeps running; try: docker exec $(container backup | cut -c1-12) snapshots"
  echo "remove it with its volumes: npm run demo -- down   (or: bash scripts/demo.sh down)"
fi

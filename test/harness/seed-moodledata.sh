#!/bin/bash
# Seeds a Moodle-like dataroot at $1. Runs inside the Moodle stand-in container (GNU coreutils).
# Size knobs: FILES (filedir blobs), BLOB_KB (average blob size), BIG_MB (one larger file).
set -euo pipefail
D="$1"; FILES="${FILES:-120}"; BLOB_KB="${BLOB_KB:-24}"; BIG_MB="${BIG_MB:-6}"
cd "$D"
mkdir -p filedir trashdir lang/de muc cache/cachestore_file localcache/mustache temp/backup temp/empty-dir \
  sessions lock repository/empty
# filedir/: content-addressed by sha1 like Moodle's file pool; half random (incompressible), half text.
tmp=$(mktemp)
for i in $(seq 1 "$FILES"); do
  kb=$(( (i * 37 % (BLOB_KB * 2)) + 1 ))
  if (( i % 2 )); then head -c $((kb * 1024)) /dev/urandom >"$tmp"
  else for _ in $(seq 1 $((kb * 10))); do echo "Moodle forum post $i: Lorem ipsum dolor sit amet, consectetur adipiscing elit $RANDOM."; done >"$tmp"; fi
  h=$(sha1sum "$tmp" | cut -c1-40)
  mkdir -p "filedir/${h:0:2}/${h:2:2}"
  cp "$tmp" "filedir/${h:0:2}/${h:2:2}/$h"
done
rm -f "$tmp"
# Chosen before the large file exists: a hard-linked file stays in the tarball, so which one it is must not
# depend on the random names (the large one, 1 run in 21, changed what the store holds).
first=$(find filedir -type f | sort | sed -n 1p)  # not head: SIGPIPE under pipefail
# One larger file (a course backup .mbz) in the file pool.
head -c $((BIG_MB * 1024 * 1024)) /dev/urandom >big.tmp
h=$(sha1sum big.tmp | cut -c1-40); mkdir -p "filedir/${h:0:2}/${h:2:2}"; mv big.tmp "filedir/${h:0:2}/${h:2:2}/$h"
# A pool file hard-linked from a path that is not a blob's (old Moodle kept trash flat in trashdir/; its
# deletion renames, so the link is this seed's): the tarball keeps both names as one file.
ln "$first" "trashdir/$(basename "$first")"
echo '$CFG->cachestores = [];' >muc/config.php
printf 'deny from all\nAllowOverride None\nNote: this file is broken intentionally, we do not want anybody to undo it in subdirectory!\n' >.htaccess
echo "Übungsblatt" >"lang/de/Übungsblätter é 日本語.txt"
echo "de" >lang/de/langconfig.php
ln -s de lang/current
ln -s /nonexistent/target lang/dangling
echo "<?php // cached" >cache/cachestore_file/core.php
echo "{{! mustache }}" >localcache/mustache/template.mustache
echo "sess_data" >sessions/sess_abc123
echo "lockfile" >lock/core_cron.lock
echo "partial" >temp/backup/partial.txt
echo "cron ran" >moodle-cron.log
echo "secret" >.private-note
# Owners and modes as a real site has them: web user 1 (daemon), Bitnami 1001, root, www-data 33.
chown -R 1:1 "$D"
find filedir -type f -exec chmod 0644 {} +
find filedir -type d -exec chmod 02775 {} +
chown -R 1001:1001 filedir/*/ 2>/dev/null || true
chmod 0600 .private-note muc/config.php
chmod 0755 lang/de/langconfig.php
chown 0:0 .private-note
chown 33:33 lang/de/langconfig.php
chown -h 1001:1001 lang/current
touch -h -d '2024-02-29 12:34:56' lang/current
touch -d '2023-01-02 03:04:05' "lang/de/Übungsblätter é 日本語.txt" .htaccess

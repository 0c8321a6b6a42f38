#!/bin/bash
# Initialise the datadir on first start (like the official/Bitnami images), then run mariadbd as PID 1
# so that SIGTERM gives a clean InnoDB shutdown.
set -euo pipefail
DATADIR=/bitnami/mariadb/data
SOCK=/run/mysqld/mysqld.sock
# The initialising server listens on its own socket only, so nobody mistakes it for the real one.
INIT_SOCK=/run/mysqld/init.sock
mkdir -p "$DATADIR" /run/mysqld
chown 1001:1001 /bitnami/mariadb "$DATADIR" /run/mysqld

if [ ! -d "$DATADIR/mysql" ]; then
  echo "entrypoint: initialising $DATADIR"
  mariadb-install-db --user=mysql --datadir="$DATADIR" --skip-test-db \
    --auth-root-authentication-method=normal >/dev/null
  mariadbd --user=mysql --datadir="$DATADIR" --skip-networking --socket="$INIT_SOCK" &
  pid=$!
  for _ in $(seq 1 60); do
    mariadb-admin --socket="$INIT_SOCK" ping >/dev/null 2>&1 && break
    sleep 0.5
  done
  root_pw="${MARIADB_ROOT_PASSWORD:-}"
  {
    echo "DELETE FROM mysql.global_priv WHERE User='';"
    if [ -n "$root_pw" ]; then
      echo "ALTER USER 'root'@'localhost' IDENTIFIED BY '${root_pw}';"
      echo "CREATE USER IF NOT EXISTS 'root'@'%' IDENTIFIED BY '${root_pw}';"
      echo "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
    fi
    if [ -n "${MARIADB_DATABASE:-}" ]; then
      echo "CREATE DATABASE IF NOT EXISTS \`${MARIADB_DATABASE}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;"
    fi
    if [ -n "${MARIADB_USER:-}" ]; then
      echo "CREATE USER IF NOT EXISTS '${MARIADB_USER}'@'%' IDENTIFIED BY '${MARIADB_PASSWORD:-}';"
      echo "CREATE USER IF NOT EXISTS '${MARIADB_USER}'@'localhost' IDENTIFIED BY '${MARIADB_PASSWORD:-}';"
      [ -n "${MARIADB_DATABASE:-}" ] && echo "GRANT ALL ON \`${MARIADB_DATABASE}\`.* TO '${MARIADB_USER}'@'%';" \
        && echo "GRANT ALL ON \`${MARIADB_DATABASE}\`.* TO '${MARIADB_USER}'@'localhost';"
    fi
    echo "FLUSH PRIVILEGES;"
  } | mariadb --socket="$INIT_SOCK" -uroot
  mariadb-admin --socket="$INIT_SOCK" -uroot ${root_pw:+-p"$root_pw"} shutdown
  wait "$pid" || true
  echo "entrypoint: initialised"
fi

exec mariadbd --user=mysql --datadir="$DATADIR" --socket="$SOCK" --bind-address=0.0.0.0 --port=3306 \
  --innodb-fast-shutdown=1 "$@"

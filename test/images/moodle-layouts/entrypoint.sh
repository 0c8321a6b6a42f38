#!/bin/bash
# Starts the stand-in in one of the layouts real Moodle images use (MOODLE_LAYOUT):
#   bitnami   code volume /bitnami/moodle (filled on first start), dataroot /bitnami/moodledata, PHP only
#             under /opt/bitnami/php/bin, web server as daemon
#   moodlehq  moodlehq/moodle-php-apache as moodle-docker runs it: code bind-mounted at /var/www/html,
#             dataroot volume /var/www/moodledata, web server as www-data
#   baked     code in the image at /var/www/html (erseco/alpine-moodle), only the dataroot /var/www/moodledata
#             is a volume; the container runs as nobody
#   moodle51  Moodle 5.1+: code volume /var/www/moodle with admin/cli/ and version.php under public/ (the
#             web root), the real config.php at the top; runs as uid 1001; dataroot in a subdirectory of the
#             volume at /var/lib/sitedata
# config.php is written on first start from the environment, as Bitnami's and erseco's entrypoints do.
set -euo pipefail
layout="${MOODLE_LAYOUT:?set MOODLE_LAYOUT}"

write_config() { # root dataroot setup
  cat >"$1/config.php" <<PHP
<?php  // Moodle configuration file (written by the stand-in's entrypoint, layout $layout).
unset(\$CFG);
global \$CFG;
\$CFG = new stdClass();
\$CFG->dbtype    = 'mariadb';
\$CFG->dblibrary = 'native';
\$CFG->dbhost    = getenv('MOODLE_DATABASE_HOST') ?: 'mariadb';
\$CFG->dbname    = getenv('MOODLE_DATABASE_NAME') ?: 'moodle';
\$CFG->dbuser    = getenv('MOODLE_DATABASE_USER') ?: 'moodle';
\$CFG->dbpass    = getenv('MOODLE_DATABASE_PASSWORD') ?: '';
\$CFG->prefix    = 'mdl_';
\$CFG->dboptions = array('dbport' => 3306);
\$CFG->wwwroot   = 'http://localhost:8080';
\$CFG->dataroot  = '$2';
\$CFG->admin     = 'admin';
require_once(__DIR__ . '/$3');
PHP
}

case "$layout" in
  bitnami)
    if [ ! -f /bitnami/moodle/version.php ]; then cp -a /opt/moodle-src/. /bitnami/moodle/; fi
    [ -f /bitnami/moodle/config.php ] || write_config /bitnami/moodle /bitnami/moodledata lib/setup.php
    mkdir -p /bitnami/moodledata && chown daemon:daemon /bitnami/moodledata
    # Bitnami's PHP is not on the default PATH.
    if [ -e /usr/bin/php8.2 ]; then
      mkdir -p /opt/bitnami/php/bin && mv /usr/bin/php8.2 /opt/bitnami/php/bin/php && rm -f /usr/bin/php
    fi
    exec setpriv --reuid=daemon --regid=daemon --init-groups /opt/bitnami/php/bin/php -S 0.0.0.0:8080 -t /bitnami/moodle ;;
  moodlehq)
    if [ ! -f /var/www/html/version.php ]; then cp -a /opt/moodle-src/. /var/www/html/; fi
    [ -f /var/www/html/config.php ] || write_config /var/www/html /var/www/moodledata lib/setup.php
    chown www-data:www-data /var/www/moodledata
    exec setpriv --reuid=www-data --regid=www-data --init-groups php -S 0.0.0.0:8080 -t /var/www/html ;;
  baked)
    [ -f /var/www/html/config.php ] || write_config /var/www/html /var/www/moodledata lib/setup.php
    exec php -S 0.0.0.0:8080 -t /var/www/html ;;
  moodle51)
    if [ ! -f /var/www/moodle/public/version.php ]; then
      mkdir -p /var/www/moodle/public && cp -a /opt/moodle-src/. /var/www/moodle/public/
      rm -f /var/www/moodle/public/config.php
      sed -i -e "s/^\$version  = .*/\$version  = 2025100600.00;/" \
        -e "s/^\$release  = .*/\$release  = '5.1 (Build: 20251006)';/" /var/www/moodle/public/version.php
      # Moodle 5.1's public/config.php only loads the real one above the web root.
      printf '%s\n' '<?php' "require_once(__DIR__ . '/../config.php');" >/var/www/moodle/public/config.php
    fi
    [ -f /var/www/moodle/config.php ] || write_config /var/www/moodle /var/lib/sitedata/moodle public/lib/setup.php
    mkdir -p /var/lib/sitedata/moodle
    exec php -S 0.0.0.0:8080 -t /var/www/moodle/public ;;
  *) echo "unknown MOODLE_LAYOUT $layout" >&2; exit 2 ;;
esac

#!/bin/bash
# Like Bitnami's image: the code volume is populated from the image on first start only.
set -euo pipefail
if [ ! -f /bitnami/moodle/version.php ]; then
  cp -a /opt/moodle-src/. /bitnami/moodle/
  echo "entrypoint: populated /bitnami/moodle"
fi
mkdir -p /bitnami/moodledata
exec php -S 0.0.0.0:8080 -t /bitnami/moodle

import type Docker from 'dockerode';
import { execCapture } from '../docker/exec.js';

/** Bitnami keeps its binaries off the default PATH. */
export const EXTRA_PATH =
  'PATH="$PATH:/opt/bitnami/php/bin:/opt/bitnami/mariadb/bin:/opt/bitnami/mariadb/sbin:/opt/bitnami/mysql/bin"';

/**
 * Where images keep Moodle's code when it is not in a mount the container has: Bitnami, moodlehq's
 * moodle-php-apache (moodle-docker) and images that bake the code in (erseco/alpine-moodle), then other
 * common choices. Mounts are checked first.
 */
export const USUAL_CODE_DIRS = [
  '/bitnami/moodle',
  '/var/www/html',
  '/var/www/moodle',
  '/var/www/html/moodle',
  '/opt/moodle',
  '/srv/moodle',
];

/**
 * One exec per container. `code\t<root>\t<dir>` (tab-separated, paths may hold spaces): Moodle's top directory (config.php) and the one holding
 * admin/cli/ — the same until 5.0, `<root>/public` from 5.1. `data <dir>`: a directory holding filedir/ (the
 * fallback when Moodle cannot be asked). `web <comm> <uid>:<gid>`: a web server or PHP process not running as
 * root — the user Moodle's files belong to. `server …`: a running MariaDB/MySQL server.
 */
const PROBE = `${EXTRA_PATH}
for d in "$@"; do
  [ -d "$d" ] || continue
  if [ -f "$d/public/admin/cli/maintenance.php" ] && [ -f "$d/config.php" ]; then printf 'code\t%s\t%s\n' "$d" "$d/public"
  elif [ -f "$d/admin/cli/maintenance.php" ]; then printf 'code\t%s\t%s\n' "$d" "$d"
  fi
  [ -d "$d/filedir" ] && printf 'data\t%s\n' "$d"
done
for p in /proc/[0-9]*; do
  c=$(cat "$p/comm" 2>/dev/null) || continue
  case "$c" in php-fpm*|apache2|httpd|frankenphp|php|php[0-9]*|php-cgi*|lighttpd|nginx|caddy) ;; *) continue ;; esac
  u=; g=
  while read -r k a _; do case "$k" in Uid:) u=$a ;; Gid:) g=$a ;; esac; done < "$p/status"
  [ -n "$u" ] && [ "$u" != 0 ] && printf 'web\t%s\t%s\n' "$c" "$u:$g"
done 2>/dev/null
# A server binary alone proves nothing (client images ship one too): its process must be running here.
if cat /proc/[0-9]*/comm 2>/dev/null | grep -qxE 'mariadbd|mysqld'; then
  s=$(command -v mariadbd || command -v mysqld) && printf 'server\t%s\n' "$("$s" --version 2>/dev/null | head -n 1)"
fi
true`;

export interface Probe {
  code: { root: string; dir: string }[];
  data: string[];
  web: { comm: string; ids: string }[];
  server: string[];
}

const EMPTY: Probe = { code: [], data: [], web: [], server: [] };

/** Runs the probe over `dirs` in one container; a container where it cannot run yields nothing. */
export async function probeContainer(docker: Docker, id: string, dirs: string[]): Promise<Probe> {
  const r = await execCapture(docker, id, ['sh', '-c', PROBE, 'probe', ...dirs], 15_000).catch(() => null);
  if (r?.exitCode !== 0) return EMPTY;
  const out: Probe = { code: [], data: [], web: [], server: [] };
  for (const line of r.stdout.split('\n')) {
    const [kind, a, b] = line.split('\t');
    if (kind === 'code' && a && b) out.code.push({ root: a, dir: b });
    else if (kind === 'data' && a) out.data.push(a);
    else if (kind === 'web' && a && b) out.web.push({ comm: a, ids: b });
    else if (kind === 'server' && a !== undefined) out.server.push(a);
  }
  return out;
}

/** Which processes tell the web user best: PHP's own workers first, a static front (nginx) last. */
const WEB_RANK = [/^php-fpm/, /^(apache2|httpd)$/, /^frankenphp$/, /^php/, /^lighttpd$/, /^(nginx|caddy)$/];

/**
 * The user to run Moodle's PHP CLI as, so the files it writes (climaintenance.html, caches) belong to the
 * web server as the site's own do: the container's configured user when it is not root (the image runs as
 * it), else the user of its web server's worker processes, else nothing (the container's default, root).
 */
export function phpUser(
  configUser: string | undefined,
  web: Probe['web'],
): { user: string | undefined; source: string } {
  if (configUser && !/^(root|0)(:.*)?$/.test(configUser))
    return { user: configUser, source: "the container's user" };
  const rank = (c: string) => {
    const i = WEB_RANK.findIndex((r) => r.test(c));
    return i < 0 ? WEB_RANK.length : i;
  };
  const best = [...web].sort((a, b) => rank(a.comm) - rank(b.comm))[0];
  if (best) return { user: best.ids, source: `its ${best.comm} processes` };
  return { user: undefined, source: 'root: no web server process runs as another user' };
}

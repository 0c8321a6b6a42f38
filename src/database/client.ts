import type Docker from 'dockerode';
import { EXTRA_PATH } from '../moodle/site.js';
import { ENV_OR_FILE, runQuery } from './container-sql.js';

/**
 * Shell prelude run inside the MariaDB container: picks credentials from the container's own environment
 * (official and Bitnami names, their *_FILE variants), so a password never passes through the sidecar or
 * its logs. The client reads it from MYSQL_PWD, not from the command line (no `ps` exposure).
 * Order: the root account (dumps routines and events of every database), then the application user, then
 * an empty root password where the image allows one.
 */
const CREDENTIALS = `${EXTRA_PATH}
${ENV_OR_FILE}
pw=$(val MARIADB_ROOT_PASSWORD); [ -n "$pw" ] || pw=$(val MYSQL_ROOT_PASSWORD)
if [ -n "$pw" ]; then user="\${MARIADB_ROOT_USER:-root}"
else
  pw=$(val MARIADB_PASSWORD); [ -n "$pw" ] || pw=$(val MYSQL_PASSWORD)
  if [ -n "$pw" ]; then user="\${MARIADB_USER:-\${MYSQL_USER:-}}"; else user=root; fi
fi
export MYSQL_PWD="$pw"
client=$(command -v mariadb || command -v mysql) || { echo "no mariadb/mysql client in this container" >&2; exit 127; }
dump=$(command -v mariadb-dump || command -v mysqldump)
`;

/** The SQL client with the container's credentials: `sql` runs one statement (batch, no headers). */
export function clientScript(body: string): string {
  return `${CREDENTIALS}${body}`;
}

/** Runs SQL in the database container; returns tab-separated rows. */
export async function querySql(
  docker: Docker,
  container: string,
  sql: string,
  timeoutMs = 60_000,
): Promise<string> {
  return runQuery(
    docker,
    container,
    ['sh', '-c', clientScript('exec "$client" -u"$user" -N -B -e "$1"'), 'sql', sql],
    timeoutMs,
    'the database container',
    'check the MARIADB_ROOT_PASSWORD / MARIADB_USER and MARIADB_PASSWORD (or *_FILE) variables of the database container',
  );
}

const SYSTEM_SCHEMAS = ['mysql', 'information_schema', 'performance_schema', 'sys'];

/** The application databases (everything but the server's own schemas), sorted. */
export async function listDatabases(docker: Docker, container: string): Promise<string[]> {
  const out = await querySql(
    docker,
    container,
    `SELECT schema_name FROM information_schema.schemata WHERE schema_name NOT IN (${SYSTEM_SCHEMAS.map((s) => `'${s}'`).join(',')}) ORDER BY schema_name`,
  );
  return out.split('\n').filter(Boolean);
}

/** Rows per `db.table` for the given tables, in one query. */
export async function countRows(
  docker: Docker,
  container: string,
  tables: string[],
): Promise<Record<string, number>> {
  if (tables.length === 0) return {};
  const q = (s: string) => `\`${s.replace(/`/g, '``')}\``;
  const lit = (s: string) => `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
  const parts = tables.map((t) => {
    const dot = t.indexOf('.');
    return `SELECT ${lit(t)}, COUNT(*) FROM ${q(t.slice(0, dot))}.${q(t.slice(dot + 1))}`;
  });
  const out = await querySql(docker, container, parts.join(' UNION ALL '), 300_000);
  const counts: Record<string, number> = {};
  for (const line of out.split('\n').filter(Boolean)) {
    const tab = line.lastIndexOf('\t');
    counts[line.slice(0, tab)] = Number(line.slice(tab + 1));
  }
  return counts;
}

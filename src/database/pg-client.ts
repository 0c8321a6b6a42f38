import type Docker from 'dockerode';
import { ENV_OR_FILE, runQuery } from './container-sql.js';

/**
 * Shell prelude run inside the PostgreSQL container: the account and password come from the container's own
 * environment (official image: POSTGRES_USER / POSTGRES_PASSWORD and their *_FILE forms; Bitnami:
 * POSTGRESQL_POSTGRES_PASSWORD, POSTGRESQL_USERNAME / POSTGRESQL_PASSWORD), handed to libpq as PGUSER and
 * PGPASSWORD — never on a command line, never through the sidecar. Connections go to the local socket.
 */
const PRELUDE = `PATH="$PATH:/opt/bitnami/postgresql/bin:$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tail -n 1)"
${ENV_OR_FILE}
user=$(val POSTGRES_USER); pw=$(val POSTGRES_PASSWORD)
if [ -z "$user$pw" ]; then
  pw=$(val POSTGRESQL_POSTGRES_PASSWORD)
  if [ -n "$pw" ]; then user=postgres; else user=$(val POSTGRESQL_USERNAME); pw=$(val POSTGRESQL_PASSWORD); fi
fi
export PGUSER="\${user:-postgres}"
[ -n "$pw" ] && export PGPASSWORD="$pw"
unset pw
command -v psql >/dev/null || { echo "no psql in this container" >&2; exit 127; }
`;

/** A script with the container's credentials in PGUSER/PGPASSWORD and the PostgreSQL tools on PATH. */
export function pgScript(body: string): string {
  return `${PRELUDE}${body}`;
}

/** Runs one SQL statement in database `db` of the container's server; returns tab-separated rows. */
export async function pgQuery(
  docker: Docker,
  container: string,
  db: string,
  sql: string,
  timeoutMs = 60_000,
): Promise<string> {
  return runQuery(
    docker,
    container,
    [
      'sh',
      '-c',
      pgScript('exec psql -X -A -t -F "$(printf \'\\t\')" -v ON_ERROR_STOP=1 -d "$1" -c "$2"'),
      'sql',
      db,
      sql,
    ],
    timeoutMs,
    'the PostgreSQL container',
    'check the POSTGRES_USER and POSTGRES_PASSWORD (or *_FILE) variables of the database container',
  );
}

/** A SQL string literal. */
export function pgLiteral(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

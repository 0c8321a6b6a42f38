import type Docker from 'dockerode';
import { SidecarError } from '../common/errors.js';
import { execCapture } from '../docker/exec.js';
import { PG_DUMP_OPTIONS } from './dump-options.js';
import type { DatabaseEngine, TableCheck } from './engine.js';
import { pgLiteral, pgQuery, pgScript } from './pg-client.js';
import { PgRowCounter } from './pg-rows.js';

/** Loads and checks connect here: it always exists and the dump may drop and recreate `postgres`. */
const MAINTENANCE_DB = 'template1';

/** Tables of the current database that the drill checks (not the catalogs). */
const USER_TABLES =
  "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'";

/** PostgreSQL (official and Bitnami images): pg_dump in plain format, psql to load, pg_amcheck to check. */
export const postgresEngine: DatabaseEngine = {
  name: 'postgres',
  label: 'PostgreSQL',
  dumpKind: 'pg-dump',
  dumpTool: 'pg_dump',
  dumpOptions: PG_DUMP_OPTIONS,
  async listDatabases(docker: Docker, container: string): Promise<string[]> {
    const out = await pgQuery(
      docker,
      container,
      MAINTENANCE_DB,
      'SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn ORDER BY datname',
    );
    const all = out.split('\n').filter(Boolean);
    // `postgres` is the server's default database: an application's only when it is the only one.
    const apps = all.filter((d) => d !== 'postgres');
    return apps.length > 0 ? apps : all;
  },
  async datadir(docker: Docker, container: string): Promise<string> {
    return (await pgQuery(docker, container, MAINTENANCE_DB, 'SHOW data_directory')).trim();
  },
  async dumpUser(docker: Docker, container: string): Promise<string | null> {
    return (await pgQuery(docker, container, MAINTENANCE_DB, 'SELECT current_user')).trim() || null;
  },
  async dataBytes(docker: Docker, container: string, databases: string[]): Promise<number> {
    // Indexes and free space included: errs high, and the line says "~" until the dump ends.
    const out = await pgQuery(
      docker,
      container,
      MAINTENANCE_DB,
      `SELECT COALESCE(SUM(pg_database_size(datname)), 0) FROM pg_database WHERE datname IN (${databases.map(pgLiteral).join(',')})`,
      15_000,
    );
    return Number(out.trim()) || 0;
  },
  dumpCommand(databases: string[]): string[] {
    // One pg_dump per database, in series, into one stream; the shell stops at the first that fails.
    return [
      'sh',
      '-c',
      pgScript(
        'command -v pg_dump >/dev/null || { echo "no pg_dump in this container" >&2; exit 127; }\n' +
          `for d in "$@"; do pg_dump ${PG_DUMP_OPTIONS.join(' ')} --dbname="$d" || exit $?; done`,
      ),
      'dump',
      ...databases,
    ];
  },
  // pg_dump's closing comment; since 15.14 (and 13.22, 14.19, 16.10, 17.6) followed by `\unrestrict <key>`.
  completed: (tail) => /-- PostgreSQL database dump complete\n--\n\s*(\\unrestrict \S+\s*)?$/.test(tail),
  rowCounter: () => new PgRowCounter(),
  loadCommand: () => [
    'sh',
    '-c',
    pgScript(`exec psql -X -q -v ON_ERROR_STOP=1 -d ${MAINTENANCE_DB} -o /dev/null`),
  ],
  async countRows(docker: Docker, container: string, tables: string[]): Promise<Record<string, number>> {
    const byDb = new Map<string, string[]>();
    for (const t of tables) {
      const dot = t.indexOf('.');
      const db = t.slice(0, dot);
      byDb.set(db, [...(byDb.get(db) ?? []), t]);
    }
    const counts: Record<string, number> = {};
    for (const [db, keys] of byDb) {
      // The table part is pg_dump's own quoted, schema-qualified name: valid SQL as it stands.
      const sql = keys
        .map((k) => `SELECT ${pgLiteral(k)}, count(*) FROM ${k.slice(db.length + 1)}`)
        .join(' UNION ALL ');
      const out = await pgQuery(docker, container, db, sql, 300_000);
      for (const line of out.split('\n').filter(Boolean)) {
        const tab = line.lastIndexOf('\t');
        counts[line.slice(0, tab)] = Number(line.slice(tab + 1));
      }
    }
    return counts;
  },
  async uptime(docker: Docker, container: string): Promise<number> {
    // An image's initialisation server listens on no TCP address; the real one does.
    const out = await pgQuery(
      docker,
      container,
      MAINTENANCE_DB,
      "SELECT CASE WHEN current_setting('listen_addresses') = '' THEN -1 ELSE floor(extract(epoch FROM now() - pg_postmaster_start_time())) END",
      15_000,
    );
    return Number(out.trim());
  },
  scratchEnv: (password, user) => [
    `POSTGRES_PASSWORD=${password}`,
    ...(user ? [`POSTGRES_USER=${user}`] : []),
  ],
  checkAll: (docker, container, timeoutMs) => pgCheckAll(docker, container, timeoutMs, ''),
};

/**
 * pg_amcheck on every database (heap pages and every B-tree index, with each index checked against its
 * table), installing the amcheck extension where it is missing, and the number of tables it covered.
 * `connect` adds connection options (a drill's socket directory).
 */
export async function pgCheckAll(
  docker: Docker,
  container: string,
  timeoutMs: number,
  connect: string,
): Promise<TableCheck> {
  const r = await execCapture(
    docker,
    container,
    [
      'sh',
      '-c',
      pgScript(
        `set -u; n=0
for d in $(psql -X -A -t ${connect} -d ${MAINTENANCE_DB} -c "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate"); do
  n=$((n + $(psql -X -A -t ${connect} -d "$d" -c "$1")))
done
echo "TABLES $n"
command -v pg_amcheck >/dev/null || { echo "no pg_amcheck in this container" >&2; exit 127; }
exec pg_amcheck ${connect} --maintenance-db=${MAINTENANCE_DB} --all --install-missing --heapallindexed`,
      ),
      'check',
      USER_TABLES,
    ],
    timeoutMs,
  );
  const tables = Number(/^TABLES (\d+)$/m.exec(r.stdout)?.[1] ?? 0);
  const problems = r.stdout
    .split('\n')
    .filter((l) => l.trim() && !l.startsWith('TABLES '))
    .map((l) => l.trim());
  // pg_amcheck exits 2 when it found corruption (and lists it), 1 on other errors.
  if (r.exitCode === 2)
    return { tool: 'pg_amcheck', tables, bad: problems.length > 0 ? problems : ['corruption reported'] };
  if (r.exitCode !== 0) {
    throw new SidecarError(
      'INTEGRITY_FAILED',
      `pg_amcheck exited ${r.exitCode}: ${(r.stderr || r.stdout).trim().slice(-400)}`,
    );
  }
  return { tool: 'pg_amcheck', tables, bad: [] };
}

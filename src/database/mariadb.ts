import type Docker from 'dockerode';
import { SidecarError } from '../common/errors.js';
import { execCapture } from '../docker/exec.js';
import { clientScript, countRows, listDatabases, querySql } from './client.js';
import { DUMP_OPTIONS } from './dump-options.js';
import type { DatabaseEngine, TableCheck } from './engine.js';
import { parseCheck } from './mariadb-check.js';
import { SqlRowCounter } from './sql-rows.js';

/** MariaDB and MySQL (official and Bitnami images): mariadb-dump, the mariadb client, mariadb-check. */
export const mariadbEngine: DatabaseEngine = {
  name: 'mariadb',
  label: 'MariaDB',
  dumpKind: 'mariadb-dump',
  dumpTool: 'mariadb-dump',
  dumpOptions: DUMP_OPTIONS,
  listDatabases,
  async datadir(docker: Docker, container: string): Promise<string> {
    return (await querySql(docker, container, 'SELECT @@datadir')).trim();
  },
  async dumpUser(): Promise<string | null> {
    return null;
  },
  async dataBytes(docker: Docker, container: string, databases: string[]): Promise<number> {
    // Table data without indexes (the dump holds no index pages); InnoDB's figure is itself approximate.
    const lit = (d: string) => `'${d.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
    const out = await querySql(
      docker,
      container,
      `SELECT COALESCE(SUM(data_length), 0) FROM information_schema.tables WHERE table_schema IN (${databases.map(lit).join(',')})`,
      15_000,
    );
    return Number(out.trim()) || 0;
  },
  dumpCommand(databases: string[]): string[] {
    return [
      'sh',
      '-c',
      clientScript(
        '[ -n "$dump" ] || { echo "no mariadb-dump/mysqldump in this container" >&2; exit 127; }\n' +
          `exec "$dump" -u"$user" ${DUMP_OPTIONS.join(' ')} --databases "$@"`,
      ),
      'dump',
      ...databases,
    ];
  },
  // mariadb-dump's last line; a dump cut short by a dying server could otherwise exit 0 on some versions.
  completed: (tail) => /-- Dump completed/.test(tail),
  rowCounter: () => new SqlRowCounter(),
  loadCommand: () => ['sh', '-c', clientScript('exec "$client" -u"$user" --default-character-set=utf8mb4')],
  countRows,
  async uptime(docker: Docker, container: string): Promise<number> {
    const out = await querySql(docker, container, "SHOW GLOBAL STATUS LIKE 'Uptime'", 15_000);
    return Number(out.split('\t')[1]?.trim());
  },
  // Official and Bitnami images initialise an empty datadir with this root password.
  scratchEnv: (password) => [`MARIADB_ROOT_PASSWORD=${password}`],
  async checkAll(docker: Docker, container: string, timeoutMs: number): Promise<TableCheck> {
    const r = await execCapture(
      docker,
      container,
      [
        'sh',
        '-c',
        clientScript(
          'chk=$(command -v mariadb-check || command -v mysqlcheck)\nexec "$chk" -u"$user" --all-databases',
        ),
      ],
      timeoutMs,
    );
    if (r.exitCode !== 0) {
      throw new SidecarError(
        'INTEGRITY_FAILED',
        `mariadb-check on the loaded dump exited ${r.exitCode}: ${(r.stderr || r.stdout).trim().slice(-400)}`,
      );
    }
    return { tool: 'mariadb-check', ...parseCheck(r.stdout) };
  },
};

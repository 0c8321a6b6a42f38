import type Docker from 'dockerode';
import { execCapture } from '../docker/exec.js';
import { LABELS } from '../docker/labels.js';
import { EXTRA_PATH } from '../moodle/site.js';
import type { ServiceContainer, Stack } from '../stack/discover.js';
import type { DatabaseEngine, EngineName } from './engine.js';
import { mariadbEngine } from './mariadb.js';
import { postgresEngine } from './postgres.js';

/** The stack's database server: its container, its engine and the server's version. */
export interface FoundDatabase {
  container: ServiceContainer;
  engine: DatabaseEngine;
  /** As the server binary reports it, e.g. 10.11.6-MariaDB-0+deb12u1 or 15.18 (Debian 15.18-0+deb12u1). */
  version: string | null;
}

const ENGINES: Record<EngineName, DatabaseEngine> = { mariadb: mariadbEngine, postgres: postgresEngine };

export function engineByName(name: EngineName): DatabaseEngine {
  return ENGINES[name];
}

/** The engine of a manifest's dump (`database.kind`). */
export function engineForDump(kind: DatabaseEngine['dumpKind']): DatabaseEngine {
  return kind === 'pg-dump' ? postgresEngine : mariadbEngine;
}

// One exec per container. A server binary alone proves nothing (client images ship one too): its process
// must be running here. PostgreSQL is also recognised by its datadir (PG_VERSION) and the image's
// POSTGRES_*/PG* environment, so a server under another process name (a wrapper) still counts.
const PROBE = `${EXTRA_PATH}:/opt/bitnami/postgresql/bin:$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tail -n 1)
comms=$(cat /proc/[0-9]*/comm 2>/dev/null)
if printf '%s\\n' "$comms" | grep -qxE 'mariadbd|mysqld'; then
  s=$(command -v mariadbd || command -v mysqld) && echo "mariadb $("$s" --version 2>/dev/null | head -n 1)"
elif printf '%s\\n' "$comms" | grep -qxE 'postgres|postmaster'; then
  d="\${PGDATA:-/var/lib/postgresql/data}"
  if [ -f "$d/PG_VERSION" ] || env | grep -qE '^(POSTGRES|POSTGRESQL|PG)[A-Z_]*='; then
    s=$(command -v postgres) && echo "postgres $("$s" --version 2>/dev/null | head -n 1)"
  fi
fi
true`;

/** `postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)` → `15.18`; `mariadbd  Ver 10.11.6-MariaDB …` → `10.11.6-MariaDB`. */
export function parseVersion(line: string): string | null {
  return line.match(/\bVer\s+(\S+)/)?.[1] ?? line.match(/\(PostgreSQL\)\s+(\S+)/)?.[1] ?? null;
}

/**
 * Finds the stack's database server by what its running containers run (never by image name: images
 * move): a `mariadbd`/`mysqld` process, or a `postgres` one with a PostgreSQL datadir or environment.
 * The label `moodle-backup.database=true` picks the container; its engine is still probed.
 */
export async function findDatabase(docker: Docker, stack: Stack): Promise<FoundDatabase | null> {
  const candidates = stack.containers.filter(
    (c) => c.state === 'running' && c.labels[LABELS.database] !== 'false',
  );
  const labelled = candidates.filter((c) => c.labels[LABELS.database] === 'true');
  for (const c of labelled.length > 0 ? labelled : candidates) {
    const r = await execCapture(docker, c.id, ['sh', '-c', PROBE], 15_000).catch(() => null);
    const line = r?.exitCode === 0 ? (r.stdout.split('\n').find(Boolean) ?? '') : '';
    const kind = line.split(' ')[0];
    if (kind === 'mariadb' || kind === 'postgres') {
      return { container: c, engine: ENGINES[kind], version: parseVersion(line) };
    }
  }
  // A labelled container whose server the probe could not see: MariaDB, as before engines were probed.
  const [first] = labelled;
  return first ? { container: first, engine: mariadbEngine, version: null } : null;
}

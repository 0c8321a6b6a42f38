import type Docker from 'dockerode';
import { execCapture } from '../docker/exec.js';
import { LABELS } from '../docker/labels.js';
import type { ServiceContainer, Stack } from '../stack/discover.js';

/** The running Moodle container and where its code and dataroot are mounted. */
export interface MoodleSite {
  container: ServiceContainer;
  /** Mount destination that holds admin/cli/maintenance.php (the code volume). */
  codeDir: string;
  /** The dataroot's mount (it holds filedir/, or its path names moodledata); null when not found. */
  dataroot: { destination: string; volume: string } | null;
}

/** The container whose MariaDB/MySQL server process is running. */
export interface DatabaseServer {
  container: ServiceContainer;
  /** Server version as the server binary reports it, e.g. 10.11.6-MariaDB; null when unknown. */
  version: string | null;
}

export interface SiteParts {
  moodle: MoodleSite | null;
  database: DatabaseServer | null;
}

/** Bitnami keeps its binaries off the default PATH. */
export const EXTRA_PATH =
  'PATH="$PATH:/opt/bitnami/php/bin:/opt/bitnami/mariadb/bin:/opt/bitnami/mariadb/sbin:/opt/bitnami/mysql/bin"';

// One exec per container: which mounts hold Moodle's code or dataroot, and whether a database server is here.
const PROBE = `${EXTRA_PATH}
for d in "$@"; do
  [ -f "$d/admin/cli/maintenance.php" ] && echo "code $d"
  [ -d "$d/filedir" ] && echo "data $d"
done
# A server binary alone proves nothing (client images ship one too): its process must be running here.
if cat /proc/[0-9]*/comm 2>/dev/null | grep -qxE 'mariadbd|mysqld'; then
  s=$(command -v mariadbd || command -v mysqld) && echo "server $("$s" --version 2>/dev/null | head -n 1)"
fi
true`;

/**
 * Finds Moodle and its database by what the running containers hold (never by image name: images move),
 * with the labels `moodle-backup.moodle=true` / `moodle-backup.database=true` as overrides.
 */
export async function findSite(docker: Docker, stack: Stack): Promise<SiteParts> {
  const running = stack.containers.filter((c) => c.state === 'running');
  const probes = new Map<string, string[]>();
  for (const c of running) {
    const r = await execCapture(
      docker,
      c.id,
      ['sh', '-c', PROBE, 'probe', ...c.mounts.map((m) => m.destination)],
      15_000,
    ).catch(() => null);
    probes.set(c.id, r?.exitCode === 0 ? r.stdout.split('\n').filter(Boolean) : []);
  }
  const lines = (c: ServiceContainer, kind: string) =>
    (probes.get(c.id) ?? []).filter((l) => l.startsWith(`${kind} `)).map((l) => l.slice(kind.length + 1));

  const moodleCandidates = running.filter((c) => c.labels[LABELS.moodle] !== 'false');
  const moodleContainer =
    moodleCandidates.find((c) => c.labels[LABELS.moodle] === 'true' && lines(c, 'code').length > 0) ??
    // A cron container often mounts the same volumes: prefer the one that also mounts the dataroot.
    moodleCandidates.find((c) => lines(c, 'code').length > 0 && lines(c, 'data').length > 0) ??
    moodleCandidates.find((c) => lines(c, 'code').length > 0);
  let moodle: MoodleSite | null = null;
  if (moodleContainer) {
    const dataDest =
      lines(moodleContainer, 'data')[0] ??
      moodleContainer.mounts.find((m) => /moodledata/i.test(m.destination))?.destination;
    const mount = moodleContainer.mounts.find((m) => m.destination === dataDest);
    moodle = {
      container: moodleContainer,
      codeDir: lines(moodleContainer, 'code')[0] as string,
      dataroot: mount ? { destination: mount.destination, volume: mount.volume } : null,
    };
  }

  const dbCandidates = running.filter((c) => c.labels[LABELS.database] !== 'false');
  const dbContainer =
    dbCandidates.find((c) => c.labels[LABELS.database] === 'true') ??
    dbCandidates.find((c) => lines(c, 'server').length > 0);
  const database = dbContainer
    ? { container: dbContainer, version: parseServerVersion(lines(dbContainer, 'server')[0] ?? '') }
    : null;
  return { moodle, database };
}

/** `mariadbd  Ver 10.11.6-MariaDB-0+deb12u1 for debian-linux-gnu …` → `10.11.6-MariaDB-0+deb12u1`. */
export function parseServerVersion(line: string): string | null {
  return line.match(/\bVer\s+(\S+)/)?.[1] ?? null;
}

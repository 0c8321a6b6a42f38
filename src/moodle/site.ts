import type Docker from 'dockerode';
import { LABELS } from '../docker/labels.js';
import type { ServiceContainer, Stack } from '../stack/discover.js';
import { type AnyMount, askMoodle, datarootOn, type MoodleDataroot } from './dataroot.js';
import { type Probe, phpUser, probeContainer, USUAL_CODE_DIRS } from './locate.js';

export type { MoodleDataroot } from './dataroot.js';
export { EXTRA_PATH } from './locate.js';

/** The running Moodle container, where its code and dataroot are, and who runs its PHP. */
export interface MoodleSite {
  container: ServiceContainer;
  /** Moodle's top directory, where the real config.php is. */
  root: string;
  /** The directory holding admin/cli/ and version.php: `root` up to Moodle 5.0, `root/public` from 5.1. */
  codeDir: string;
  /** Who runs Moodle's CLI (user name, uid or uid:gid); undefined = the container's default user. */
  user: string | undefined;
  /** How `user` was chosen, for the log. */
  userSource: string;
  /** `$CFG->dbtype` (mariadb, mysqli, pgsql, …), null when Moodle could not be asked. */
  dbtype: string | null;
  dataroot: MoodleDataroot | null;
  /** Why Moodle could not be asked for its dataroot (then it is guessed from the mounts). */
  askError?: string;
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
  /** What was looked at: for the warning when Moodle is not found. */
  checked: { containers: string[]; dirs: string[] };
}

interface Inspected {
  container: ServiceContainer;
  mounts: AnyMount[];
  user: string | undefined;
  dirs: string[];
  probe: Probe;
}

/**
 * Finds Moodle and its database by what the running containers hold (never by image name: images move):
 * Moodle's code in a mount (named volume or bind mount), at `moodle-backup.moodle-dir`, or at the usual paths;
 * then asks Moodle itself for its dataroot. `moodle-backup.moodle` / `moodle-backup.database` override.
 */
export async function findSite(docker: Docker, stack: Stack): Promise<SiteParts> {
  const running = stack.containers.filter((c) => c.state === 'running');
  // One exec per container, side by side: each waits mostly on the engine.
  const seen = await Promise.all(running.map((c) => inspectOne(docker, c)));
  const checked = {
    containers: running.map((c) => c.name),
    dirs: [...new Set(seen.flatMap((s) => s.dirs))],
  };

  const moodleCandidates = seen.filter((s) => s.container.labels[LABELS.moodle] !== 'false');
  const chosen =
    moodleCandidates.find((s) => s.container.labels[LABELS.moodle] === 'true' && s.probe.code.length > 0) ??
    // A cron container often mounts the same volumes: prefer one that also runs the web server.
    moodleCandidates.find((s) => s.probe.code.length > 0 && s.probe.web.length > 0) ??
    moodleCandidates.find((s) => s.probe.code.length > 0);
  const moodle = chosen ? await describeSite(docker, chosen) : null;

  const dbCandidates = seen.filter((s) => s.container.labels[LABELS.database] !== 'false');
  const db =
    dbCandidates.find((s) => s.container.labels[LABELS.database] === 'true') ??
    dbCandidates.find((s) => s.probe.server.length > 0);
  const database = db
    ? { container: db.container, version: parseServerVersion(db.probe.server[0] ?? '') }
    : null;
  return { moodle, database, checked };
}

/** One container's mounts of every type and its user (inspect), then the probe over the candidate dirs. */
async function inspectOne(docker: Docker, c: ServiceContainer): Promise<Inspected> {
  const info = await docker
    .getContainer(c.id)
    .inspect()
    .catch(() => null);
  const mounts: AnyMount[] = (info?.Mounts ?? []).map((m) => ({
    type: m.Type,
    ...(m.Type === 'volume' && m.Name ? { volume: m.Name } : {}),
    destination: m.Destination,
  }));
  const labelled = c.labels[LABELS.moodleDir]?.trim();
  const dirs = [
    ...new Set([
      ...(labelled ? [labelled.replace(/\/+$/, '')] : []),
      ...mounts.map((m) => m.destination),
      ...USUAL_CODE_DIRS,
    ]),
  ];
  const probe = await probeContainer(docker, c.id, dirs);
  return { container: c, mounts, user: info?.Config.User || undefined, dirs, probe };
}

async function describeSite(docker: Docker, s: Inspected): Promise<MoodleSite> {
  const code = s.probe.code[0] as Probe['code'][number];
  const { user, source } = phpUser(s.user, s.probe.web);
  const site: MoodleSite = {
    container: s.container,
    root: code.root,
    codeDir: code.dir,
    user,
    userSource: source,
    dbtype: null,
    dataroot: null,
  };
  const asked = await askMoodle(docker, s.container.id, `${code.dir}/admin/cli`, user);
  if ('error' in asked) {
    site.askError = asked.error;
    // Moodle cannot answer (database down, site broken): the mount that holds filedir/, or is named so.
    const guess =
      s.probe.data[0] ??
      s.mounts.find((m) => m.type === 'volume' && /moodledata/i.test(m.destination))?.destination;
    if (guess) site.dataroot = datarootOn(s.mounts, guess, guess, 'mounts');
    return site;
  }
  site.dbtype = asked.dbtype;
  site.dataroot = datarootOn(s.mounts, asked.dataroot, asked.real, 'cfg.php');
  return site;
}

/** `mariadbd  Ver 10.11.6-MariaDB-0+deb12u1 for debian-linux-gnu …` → `10.11.6-MariaDB-0+deb12u1`. */
export function parseServerVersion(line: string): string | null {
  return line.match(/\bVer\s+(\S+)/)?.[1] ?? null;
}

import type Docker from 'dockerode';
import { execCapture } from '../docker/exec.js';
import { EXTRA_PATH } from './locate.js';

/** A mount of the Moodle container, of any type (named volumes, bind mounts, tmpfs). */
export interface AnyMount {
  type: string;
  /** The named volume's name; undefined for other types. */
  volume?: string;
  destination: string;
}

export interface MoodleDataroot {
  /** The dataroot as Moodle's config.php sets it (asked with cfg.php), or the mount it was guessed from. */
  path: string;
  /** Moodle's own `admin/cli/cfg.php`, or — when that failed — the mount that holds filedir/. */
  source: 'cfg.php' | 'mounts';
  /** The named volume it is on: its mount, and the dataroot's path inside the volume ('' = the top). */
  volume: { name: string; destination: string; subpath: string } | null;
  /** Why `volume` is null: a bind mount, or the container's own file system. */
  note?: string;
}

/**
 * Asks Moodle (`cfg.php --name=dataroot`, `--name=dbtype`) as the web user; the dataroot's real path is
 * resolved in the container, so a symlinked dataroot still maps to its volume. Moodle's CLI loads config.php
 * and connects to the database first: this fails while the database is down.
 */
const ASK = `${EXTRA_PATH}
cli="$1"
# Both questions at once: each run bootstraps Moodle (config.php, a database connection).
{ t=$(php "$cli/cfg.php" --name=dbtype 2>/dev/null | tail -n 1); printf 'dbtype\\t%s\\n' "$t"; } &
d=$(php "$cli/cfg.php" --name=dataroot) || { printf 'cfg.php --name=dataroot exited %s: %s\\n' "$?" "$d" >&2; wait; exit 3; }
d=$(printf '%s\\n' "$d" | tail -n 1)
r=$(readlink -f "$d" 2>/dev/null) || r=$d
printf 'dataroot\\t%s\\nreal\\t%s\\n' "$d" "$r"
wait`;

export interface Asked {
  dataroot: string;
  real: string;
  dbtype: string | null;
}

/** Moodle's answer, or the reason it could not answer. */
export async function askMoodle(
  docker: Docker,
  container: string,
  cliDir: string,
  user: string | undefined,
): Promise<Asked | { error: string }> {
  const r = await execCapture(docker, container, ['sh', '-c', ASK, 'ask', cliDir], 30_000, user).catch(
    (err: unknown) => ({ exitCode: -1, stdout: '', stderr: (err as Error).message }),
  );
  const field = (k: string) =>
    r.stdout
      .split('\n')
      .find((l) => l.startsWith(`${k}\t`))
      ?.slice(k.length + 1)
      .trim();
  const dataroot = field('dataroot');
  if (r.exitCode !== 0 || !dataroot?.startsWith('/'))
    return { error: `${r.stderr}${r.stdout}`.trim().slice(-300) || `exit ${r.exitCode}` };
  return { dataroot, real: field('real') || dataroot, dbtype: field('dbtype') || null };
}

/** The mount whose destination holds `path` (the deepest one), and the path inside it. */
export function mountOf(mounts: AnyMount[], path: string): { mount: AnyMount; subpath: string } | null {
  const clean = path.replace(/\/+$/, '') || '/';
  const hit = mounts
    .filter((m) => {
      const d = m.destination.replace(/\/+$/, '');
      return clean === d || clean.startsWith(`${d}/`);
    })
    .sort((a, b) => b.destination.length - a.destination.length)[0];
  if (!hit) return null;
  return { mount: hit, subpath: clean.slice(hit.destination.replace(/\/+$/, '').length + 1) };
}

/** Maps the dataroot's (real) path to the named volume mounted there. */
export function datarootOn(
  mounts: AnyMount[],
  path: string,
  real: string,
  source: MoodleDataroot['source'],
): MoodleDataroot {
  const found = mountOf(mounts, real) ?? mountOf(mounts, path);
  if (found?.mount.type === 'volume' && found.mount.volume) {
    return {
      path,
      source,
      volume: { name: found.mount.volume, destination: found.mount.destination, subpath: found.subpath },
    };
  }
  const note = found
    ? `it is on a ${found.mount.type} mount (${found.mount.destination}), not a named volume: the sidecar backs up named volumes only`
    : "it is in the container's own file system, not on a volume: it is lost when the container is recreated, and not backed up";
  return { path, source, volume: null, note };
}

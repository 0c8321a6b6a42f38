import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import type { Dataset } from './datasets.js';
import { perVolume, q } from './scenarios.js';

/**
 * The incremental group's baselines as shell commands over the data set's volume directories (the same
 * directories the sidecar reads): restic and borg with their default settings, `rsync -a` and
 * `rsync -a --link-dest`, `tar | zstd -T0 -3` and `zstd -d | tar -x`. Each tool's caches live in the run's
 * work directory, so a 1st run is a first run and a 2nd run has the cache a real 2nd run would have.
 */
export type Tool = 'restic' | 'borg' | 'rsync';

export function installed(tool: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function dirs(ds: Dataset): string {
  return Object.values(ds.stack.dirs).map(q).join(' ');
}

/** Environment of restic and borg: no password prompts, caches under `work`. */
export function toolEnv(work: string): string {
  return [
    'export RESTIC_PASSWORD=bench',
    `export RESTIC_CACHE_DIR=${q(join(work, 'restic-cache'))}`,
    `export BORG_BASE_DIR=${q(join(work, 'borg-base'))}`,
    'export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes',
    'export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes',
  ].join('\n');
}

/** Untimed set-up of a fresh repository (restic init, borg init) or nothing. */
export function initScript(tool: Tool, work: string, repo: string): string {
  const env = toolEnv(work);
  if (tool === 'restic') return `${env}\nrm -rf ${q(repo)} && restic -q -r ${q(repo)} init >/dev/null`;
  if (tool === 'borg') return `${env}\nrm -rf ${q(repo)} && borg init -e none ${q(repo)}`;
  return `rm -rf ${q(repo)} && mkdir -p ${q(repo)}`;
}

/**
 * One backup run of a tool into `repo`. rsync: `run` names the destination directory under `repo`; a 2nd run
 * hard-links unchanged files to `linkDest` (`rsync --link-dest`, the classic incremental snapshot).
 */
export function backupScript(
  tool: Tool,
  work: string,
  ds: Dataset,
  repo: string,
  run: string,
  linkDest?: string,
): string {
  const env = toolEnv(work);
  if (tool === 'restic') return `${env}\nrestic -q -r ${q(repo)} backup ${dirs(ds)} >/dev/null`;
  if (tool === 'borg') return `${env}\nborg create ${q(`${repo}::${run}`)} ${dirs(ds)}`;
  const dest = join(repo, run);
  return perVolume(ds, (d, n) => {
    const link = linkDest ? ` --link-dest=${q(join(repo, linkDest, n))}` : '';
    return `mkdir -p ${q(join(dest, n))} && rsync -a${link} ${d}/ ${q(join(dest, n))}/`;
  });
}

/** `tar -c | zstd -T0 -3` of each volume into `out/<volume>.zst` (the first-backup yardstick). */
export function tarZstdScript(ds: Dataset, out: string): string {
  return perVolume(ds, (d, n) => `tar -C ${d} -c . | zstd -T0 -3 -q -c > ${q(join(out, `${n}.zst`))}`);
}

/** `zstd -d | tar -x` of those archives into `into/<volume>` (the full-restore yardstick). */
export function untarScript(ds: Dataset, from: string, into: string): string {
  return perVolume(ds, (_d, n) => {
    const dir = q(join(into, n));
    return `mkdir -p ${dir} && zstd -d -q -c ${q(join(from, `${n}.zst`))} | tar -C ${dir} -x --numeric-owner -p`;
  });
}

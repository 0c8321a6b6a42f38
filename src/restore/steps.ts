import type Docker from 'dockerode';
import type { Manifest, ManifestVolume } from '../archive/manifest.js';
import type { TarStats } from '../archive/tar-guard.js';
import { runBackup } from '../backup/run.js';
import { isSidecarError, SidecarError } from '../common/errors.js';
import type { Logger } from '../observe/logger.js';
import type { Stack } from '../stack/discover.js';
import { stopOrder } from '../stack/plan.js';
import { keepsRunning } from '../stack/swarm-quiesce.js';
import { MOUNT, volumeExists } from '../volume/archive-api.js';
import { mountPointCommands } from '../volume/extract.js';
import { removeOld, type SwapRecord } from '../volume/swap.js';
import type { RestoreOptions, RestorePlan } from './types.js';

/**
 * Small steps of the restore pipeline (plan.ts, apply.ts, run.ts): which volumes, where they go, what must
 * stop, the safety snapshot, and the clean-up after extraction.
 */

export function selectVolumes(manifest: Manifest, wanted?: string[]): ManifestVolume[] {
  if (!wanted || wanted.length === 0) return manifest.volumes;
  return wanted.map((w) => {
    const v = manifest.volumes.find((x) => x.name === w);
    if (!v) {
      throw new SidecarError(
        'USAGE',
        `snapshot ${manifest.id} has no volume "${w}"`,
        `it has: ${manifest.volumes.map((x) => x.name).join(', ')}`,
      );
    }
    return v;
  });
}

/** The Docker volume a snapshot volume goes to: the project's volume with that short name, or a new one. */
function targetVolume(stack: Stack, v: ManifestVolume): string {
  return stack.allVolumes.find((x) => x.short === v.name)?.name ?? `${stack.project}_${v.name}`;
}

export async function makePlan(
  docker: Docker,
  manifest: Manifest,
  selected: ManifestVolume[],
  stack: Stack,
): Promise<RestorePlan> {
  const volumes = [];
  for (const v of selected) {
    const dockerName = targetVolume(stack, v);
    volumes.push({
      name: v.name,
      dockerName,
      exists: await volumeExists(docker, dockerName),
      storedBytes: v.storedBytes,
      rawBytes: v.rawBytes,
    });
  }
  const names = new Set(volumes.map((v) => v.dockerName));
  // A crash-looping container too: Docker would restart it onto half-restored volumes.
  const users = stack.containers
    .filter((c) => c.state === 'running' || c.state === 'paused' || c.state === 'restarting')
    .filter((c) => c.mounts.some((m) => names.has(m.volume)) && !keepsRunning(c));
  return { snapshot: manifest, project: stack.project, volumes, stop: stopOrder(users).map((c) => c.name) };
}

/**
 * Saves the volumes the restore overwrites as a pre-restore snapshot; the id, or undefined when none exists
 * yet. The site may be broken (that is why it is restored): when its maintenance mode cannot be turned on,
 * the snapshot stops it instead (backup/stop-instead.ts). A failure restores nothing, and its hint says how
 * to go on without the snapshot.
 */
export async function takeSafetySnapshot(o: RestoreOptions, plan: RestorePlan): Promise<string | undefined> {
  const existing = plan.volumes.filter((v) => v.exists).map((v) => v.name);
  if (existing.length === 0) return undefined;
  const m = await runBackup({
    docker: o.docker,
    config: { ...o.config, project: plan.project },
    backend: o.backend,
    log: o.log,
    kind: 'pre-restore',
    volumes: existing,
    signal: o.signal,
    fallback: { expectMoodle: plan.snapshot.stack.moodle != null },
    ...(o.job ? { job: o.job } : {}),
  }).catch((err: unknown) => {
    if (!isSidecarError(err, 'MAINTENANCE_FAILED')) throw err;
    throw new SidecarError(
      err.code,
      `the pre-restore safety snapshot failed, nothing was restored: ${err.message}`,
      `${err.hint ? `${err.hint}; or ` : ''}restore without it: \`restore ${plan.snapshot.id}${o.job ? ` --job ${o.job}` : ''} --yes --no-safety-snapshot\``,
      { cause: err },
    );
  });
  o.log.info({ step: 'safety', snapshot: m.id }, `saved the current volumes as pre-restore snapshot ${m.id}`);
  return m.id;
}

/**
 * After extraction: drop a leftover maintenance flag (a snapshot taken in maintenance mode must not bring the
 * site back in maintenance mode) and give the mount point its recorded owner, mode and mtime, which Docker's
 * unpacking leaves alone.
 */
export function finishScript(root?: TarStats['root']): string {
  return [`rm -f ${MOUNT}/climaintenance.html`, ...mountPointCommands(root)].join(' && ');
}

/**
 * After a staged restore, once the stack runs again: deletes each plain volume's old content. A failure
 * leaves the restore done and says what to delete by hand (the next restore of that volume removes it too).
 */
export async function deleteOldContent(
  vols: { name: string; rec: SwapRecord }[],
  log: Logger,
): Promise<void> {
  for (const v of vols) {
    const t0 = Date.now();
    await removeOld(v.rec).then(
      () =>
        log.info(
          { step: 'cleanup', volume: v.name, ms: Date.now() - t0 },
          `deleted the old content of ${v.name}`,
        ),
      (err: unknown) =>
        log.warn(
          { step: 'cleanup', volume: v.name, err },
          `could not delete the old content of ${v.name}: ${(err as Error).message}`,
        ),
    );
  }
}

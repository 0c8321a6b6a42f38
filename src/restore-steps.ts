import type Docker from 'dockerode';
import type { Manifest, ManifestVolume } from './archive/manifest.js';
import type { TarStats } from './archive/tar-guard.js';
import type { Stack } from './docker/discover.js';
import { mountPointCommands } from './docker/extract.js';
import { stopOrder } from './docker/plan.js';
import { MOUNT, volumeExists } from './docker/volumes.js';
import { SidecarError } from './errors.js';
import type { Logger } from './observe/logger.js';
import type { RestorePlan } from './restore.js';
import { removeOld, type SwapRecord } from './restore-swap.js';

/** The steps restore.ts calls: which volumes, where they go, what must stop, and the clean-up after extraction. */

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
  const users = stack.containers
    .filter((c) => c.state === 'running' || c.state === 'paused')
    .filter((c) => c.mounts.some((m) => names.has(m.volume)));
  return { snapshot: manifest, project: stack.project, volumes, stop: stopOrder(users).map((c) => c.name) };
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

import type { Readable } from 'node:stream';
import type Docker from 'dockerode';
import { SidecarError } from '../errors.js';
import { HELPER_LABEL } from './labels.js';
import { MOUNT, volumeExists, withHelper } from './volumes.js';

/** Creates a missing volume with Compose's labels, so `docker compose up` adopts it instead of complaining. */
export async function ensureVolume(
  docker: Docker,
  name: string,
  project: string,
  short: string,
): Promise<boolean> {
  if (await volumeExists(docker, name)) return false;
  await docker.createVolume({
    Name: name,
    Labels: { 'com.docker.compose.project': project, 'com.docker.compose.volume': short },
  });
  return true;
}

/**
 * Runs a shell command in a short-lived helper that mounts the volume, and waits for it. Used for what the
 * archive API cannot do: emptying a volume (dotfiles too) without removing its mount point.
 */
export async function runInVolume(
  docker: Docker,
  volume: string,
  image: string,
  script: string,
): Promise<void> {
  await withHelper(docker, { volume, image, readOnly: false, cmd: ['sh', '-c', script] }, async (c) => {
    await c.start();
    const r = (await c.wait()) as { StatusCode: number };
    if (r.StatusCode !== 0) {
      const logs = (await c.logs({ stdout: true, stderr: true })).toString().slice(-500);
      throw new SidecarError(
        'RESTORE_FAILED',
        `helper for volume ${volume} exited ${r.StatusCode}: ${logs.trim()}`,
      );
    }
  });
}

/** Empties the volume's contents, dotfiles included; the mount point itself stays. */
export function emptyVolume(docker: Docker, volume: string, image: string): Promise<void> {
  return runInVolume(docker, volume, image, `rm -rf ${MOUNT}/..?* ${MOUNT}/.[!.]* ${MOUNT}/*`);
}

/** Unpacks a plain tar stream (rooted at ./) into the volume; Docker keeps numeric owners, modes, times, links. */
export async function putVolumeTar(
  docker: Docker,
  volume: string,
  image: string,
  tar: Readable,
): Promise<void> {
  await withHelper(docker, { volume, image, readOnly: false }, async (c) => {
    await c.putArchive(tar as unknown as NodeJS.ReadableStream, { path: MOUNT });
  });
}

export { HELPER_LABEL };

import type { Readable } from 'node:stream';
import type Docker from 'dockerode';
import { SidecarError } from '../common/errors.js';
import { MOUNT, volumeExists, withHelper } from './archive-api.js';

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
 * Runs a shell command in a short-lived helper that mounts the volume, waits for it and returns its output.
 * Used for what the archive API cannot do: emptying a volume (dotfiles too) without removing its mount point,
 * fixing the mount point's attributes, counting what an extraction wrote.
 */
export async function runInVolume(
  docker: Docker,
  volume: string,
  image: string,
  script: string,
  opts: { readOnly?: boolean } = {},
): Promise<string> {
  return withHelper(
    docker,
    { volume, image, readOnly: opts.readOnly ?? false, cmd: ['sh', '-c', script] },
    async (c) => {
      await c.start();
      const r = (await c.wait()) as { StatusCode: number };
      const output = demuxLogs((await c.logs({ stdout: true, stderr: true })) as unknown as Buffer);
      if (r.StatusCode !== 0) {
        throw new SidecarError(
          'RESTORE_FAILED',
          `helper for volume ${volume} exited ${r.StatusCode}: ${output.trim().slice(-500)}`,
        );
      }
      return output;
    },
  );
}

/** Log text of a container without a TTY: Docker prefixes every chunk with an 8-byte stream header. */
export function demuxLogs(buf: Buffer): string {
  const parts: Buffer[] = [];
  let i = 0;
  // A frame starts with [stream type 0-2, 0, 0, 0], then the payload length as a big-endian word.
  while (i + 8 <= buf.length && (buf[i] ?? 3) <= 2 && buf.readUIntBE(i + 1, 3) === 0) {
    const n = buf.readUInt32BE(i + 4);
    parts.push(buf.subarray(i + 8, i + 8 + n));
    i += 8 + n;
  }
  return i === 0 ? buf.toString('utf8') : Buffer.concat(parts).toString('utf8');
}

/** Empties the volume's contents, dotfiles included; the mount point itself stays. */
export async function emptyVolume(docker: Docker, volume: string, image: string): Promise<void> {
  await runInVolume(docker, volume, image, `rm -rf ${MOUNT}/..?* ${MOUNT}/.[!.]* ${MOUNT}/*`);
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

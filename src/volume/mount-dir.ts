import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import type Docker from 'dockerode';
import { SidecarError } from '../common/errors.js';
import type { ReadPath } from '../config/types.js';
import type { SelfInfo } from '../docker/self.js';

/**
 * Where a volume's data can be reached as a plain directory by this process, or null when only Docker's
 * archive API can reach it. Reading a directory with GNU tar costs a fraction of the CPU that getArchive /
 * putArchive cost in dockerd (docs/design.md, "Where the time goes"), so `auto` prefers it.
 *
 *  - the sidecar's own container mounts the volume (offen's `/backup/<name>:ro`, or any mount of it):
 *    its Destination; for writing the mount must be read-write;
 *  - the CLI runs on the Docker host as root: the volume's Mountpoint, but only for the `local` driver
 *    without options. A local volume with options (NFS, CIFS, a bind device) is mounted only while a
 *    container uses it, so with the stack stopped its Mountpoint would be an empty directory.
 */
export async function volumeDir(
  docker: Docker,
  volume: string,
  self: SelfInfo | null,
  setting: ReadPath,
  use: 'read' | 'write',
): Promise<string | null> {
  if (setting === 'docker') return null;
  const dir = await findDir(docker, volume, self, use);
  if (dir === null && setting === 'mount') {
    throw new SidecarError(
      'CONFIG_INVALID',
      `BACKUP_READ_PATH=mount, but volume ${volume} is not reachable as a ${use === 'write' ? 'writable ' : ''}directory from the sidecar`,
      self
        ? `mount the volume into the sidecar${use === 'write' ? ' read-write' : ''}, or set BACKUP_READ_PATH=auto`
        : 'run the CLI as root on the Docker host, or set BACKUP_READ_PATH=auto',
    );
  }
  return dir;
}

async function findDir(
  docker: Docker,
  volume: string,
  self: SelfInfo | null,
  use: 'read' | 'write',
): Promise<string | null> {
  const mode = use === 'write' ? constants.R_OK | constants.W_OK : constants.R_OK;
  if (self) {
    // Inside a container the host's Mountpoint path means nothing: only our own mounts count.
    const m = self.volumeMounts.find((x) => x.name === volume && (use === 'read' || x.rw === true));
    return m && (await usable(m.destination, mode)) ? m.destination : null;
  }
  if (process.getuid?.() !== 0) return null;
  const info = (await docker.getVolume(volume).inspect()) as {
    Driver?: string;
    Mountpoint?: string;
    Options?: Record<string, string> | null;
  };
  if (info.Driver !== 'local' || Object.keys(info.Options ?? {}).length > 0 || !info.Mountpoint) return null;
  return (await usable(info.Mountpoint, mode)) ? info.Mountpoint : null;
}

/** A directory we may use; a remote engine's Mountpoint (DOCKER_HOST) does not exist here. */
async function usable(dir: string, mode: number): Promise<boolean> {
  try {
    if (!(await stat(dir)).isDirectory()) return false;
    await access(dir, mode);
    return true;
  } catch {
    return false;
  }
}

import { readFile } from 'node:fs/promises';
import type Docker from 'dockerode';
import { ownContainerId } from '../common/container-id.js';
import { dockerStatus } from './client.js';

export interface SelfInfo {
  id: string;
  image: string;
  labels: Record<string, string>;
  /** Named volumes mounted into the sidecar: name and mount point. */
  volumeMounts: { name: string; destination: string; rw?: boolean }[];
}

/**
 * The sidecar's own container, or null when it runs on the host. The id comes from the mount table
 * (Docker bind-mounts /etc/hostname from /var/lib/docker/containers/<id>/), falling back to HOSTNAME,
 * which is the short id unless the compose file sets a hostname.
 */
export async function findSelf(docker: Docker): Promise<SelfInfo | null> {
  const candidates: string[] = [];
  try {
    const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
    const id = ownContainerId(mountinfo);
    if (id) candidates.push(id);
  } catch {
    // not Linux or no procfs: fall through to HOSTNAME
  }
  if (process.env.HOSTNAME) candidates.push(process.env.HOSTNAME);
  for (const id of candidates) {
    try {
      const info = await docker.getContainer(id).inspect();
      return {
        id: info.Id,
        image: info.Image,
        labels: info.Config.Labels ?? {},
        volumeMounts: (info.Mounts ?? [])
          .filter((m) => m.Type === 'volume' && m.Name)
          .map((m) => ({ name: m.Name as string, destination: m.Destination, rw: m.RW })),
      };
    } catch (err) {
      if (dockerStatus(err) !== 404) throw err;
    }
  }
  return null;
}

import { readFile } from 'node:fs/promises';
import type Docker from 'dockerode';
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

/**
 * The container whose hostname/hosts/resolv.conf file is mounted at this process's own /etc: the mount point
 * (field 5) must be exactly that. On the host, dockerd's archive API mounts a container's files under
 * /var/lib/docker/overlay2/…/merged/etc/… for a moment, in the host's namespace; matching the source alone
 * took a CLI on the host for whichever container another run was copying to.
 */
export function ownContainerId(mountinfo: string): string | null {
  for (const line of mountinfo.split('\n')) {
    const f = line.split(' ');
    const m = /\/containers\/([0-9a-f]{64})\/(?:hostname|hosts|resolv\.conf)$/.exec(f[3] ?? '');
    if (m?.[1] && ['/etc/hostname', '/etc/hosts', '/etc/resolv.conf'].includes(f[4] ?? '')) return m[1];
  }
  return null;
}

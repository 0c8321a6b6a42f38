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

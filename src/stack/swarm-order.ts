import type Docker from 'dockerode';

/** Server processes of the databases Moodle runs on. */
const DATABASE_PROCESS = /(^|\/)(mariadbd|mysqld|postgres)(\s|$)/;

/**
 * The services whose running task on this node runs a database server, by process name (never by image
 * name: images move). Read with the engine's `top`, which needs no shell in the container.
 */
export async function databaseServices(
  docker: Docker,
  containers: { service: string; info: Docker.ContainerInfo }[],
): Promise<Set<string>> {
  const out = new Set<string>();
  for (const c of containers) {
    if (out.has(c.service) || c.info.State !== 'running') continue;
    const top = await docker
      .getContainer(c.info.Id)
      .top({ ps_args: '-eo pid,args' })
      .catch(() => null);
    const rows = (top?.Processes ?? []) as string[][];
    if (rows.some((r) => DATABASE_PROCESS.test(r.join(' ')))) out.add(c.service);
  }
  return out;
}

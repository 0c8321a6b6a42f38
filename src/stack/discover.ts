import type Docker from 'dockerode';
import { SidecarError } from '../common/errors.js';
import type { Config } from '../config/types.js';
import { HELPER_LABEL, LABELS } from '../docker/labels.js';
import type { SelfInfo } from '../docker/self.js';
import { discoverSwarm, ownStack, STACK_LABEL, type SwarmServiceRef } from './swarm.js';

export interface ServiceContainer {
  id: string;
  name: string;
  service: string;
  image: string;
  imageId: string;
  /** running, paused, exited, created, ... */
  state: string;
  labels: Record<string, string>;
  /** Services this one depends on (Compose's depends_on label, or our own label). */
  dependsOn: string[];
  mounts: { volume: string; destination: string }[];
  /** A swarm task's service: stopping it means scaling the service to 0 (stack/scale.ts). */
  swarm?: SwarmServiceRef;
}

export interface VolumeTarget {
  /** Docker's volume name, e.g. moodle_moodledata_data. */
  name: string;
  /** Name in the compose file, e.g. moodledata_data; used in archive names and on the CLI. */
  short: string;
  mountedBy: { container: string; service: string; destination: string }[];
}

export interface Stack {
  /** The compose project, or the swarm stack's name. */
  project: string;
  /** Absent for a compose project. */
  kind?: 'swarm';
  containers: ServiceContainer[];
  /** Volumes selected for backup, in a stable order. */
  volumes: VolumeTarget[];
  /** Every named volume of the project (selection candidates). */
  allVolumes: VolumeTarget[];
}

function parseDependsOn(labels: Record<string, string>): string[] {
  const own = labels[LABELS.dependsOn];
  const compose = labels['com.docker.compose.depends_on'];
  const raw = own ?? compose ?? '';
  // Compose v2 writes "svc:condition:restart,svc2:...".
  return raw
    .split(',')
    .map((s) => s.trim().split(':')[0] ?? '')
    .filter(Boolean);
}

/** The compose project: config first, then the sidecar's own label. */
export function resolveProject(config: Pick<Config, 'project'>, self: SelfInfo | null): string {
  const project = config.project ?? self?.labels['com.docker.compose.project'] ?? ownStack(self);
  if (!project) {
    throw new SidecarError(
      'DISCOVERY_FAILED',
      'cannot tell which compose project to back up',
      self
        ? 'run the sidecar as a service of the Moodle compose project or swarm stack, or set BACKUP_PROJECT'
        : 'the sidecar runs outside a container: set BACKUP_PROJECT to the compose project name',
    );
  }
  return project;
}

/**
 * Finds the project's containers and named volumes from the Docker socket alone (never by image name:
 * images move, e.g. bitnami → bitnamilegacy) and selects the volumes to save.
 */
export async function discoverStack(
  docker: Docker,
  config: Pick<Config, 'project' | 'volumes'>,
  self: SelfInfo | null,
): Promise<Stack> {
  const project = resolveProject(config, self);
  if (await isSwarmStack(docker, project, self)) return swarmStack(docker, project, config, self);
  const listed = await docker.listContainers({
    all: true,
    filters: { label: [`com.docker.compose.project=${project}`] },
  });
  const containers: ServiceContainer[] = listed
    .filter((c) => c.Id !== self?.id)
    .filter((c) => c.Labels['com.docker.compose.oneoff'] !== 'True' && c.Labels[HELPER_LABEL] === undefined)
    .map((c) => ({
      id: c.Id,
      name: (c.Names[0] ?? c.Id).replace(/^\//, ''),
      service: c.Labels['com.docker.compose.service'] ?? (c.Names[0] ?? c.Id).replace(/^\//, ''),
      image: c.Image,
      imageId: c.ImageID,
      state: c.State,
      labels: c.Labels,
      dependsOn: parseDependsOn(c.Labels),
      mounts: (c.Mounts ?? [])
        .filter((m) => m.Type === 'volume' && m.Name)
        .map((m) => ({ volume: m.Name as string, destination: m.Destination })),
    }))
    .sort((a, b) => a.name.localeCompare(b.name));

  const { Volumes } = await docker.listVolumes({
    filters: { label: [`com.docker.compose.project=${project}`] },
  });
  const byName = new Map<string, VolumeTarget>();
  const add = (name: string, short?: string) => {
    if (!byName.has(name)) {
      const s = short ?? (name.startsWith(`${project}_`) ? name.slice(project.length + 1) : name);
      byName.set(name, { name, short: s, mountedBy: [] });
    }
    return byName.get(name) as VolumeTarget;
  };
  for (const v of Volumes ?? []) add(v.Name, v.Labels?.['com.docker.compose.volume']);
  for (const c of containers) {
    for (const m of c.mounts)
      add(m.volume).mountedBy.push({ container: c.name, service: c.service, destination: m.destination });
  }
  return finish(project, containers, byName, config, self);
}

function finish(
  project: string,
  containers: ServiceContainer[],
  byName: Map<string, VolumeTarget>,
  config: Pick<Config, 'volumes'>,
  self: SelfInfo | null,
): Stack {
  const own = new Set(self?.volumeMounts.map((m) => m.name) ?? []);
  const allVolumes = [...byName.values()].sort((a, b) => a.short.localeCompare(b.short));
  return { project, containers, allVolumes, volumes: selectVolumes(allVolumes, config.volumes, self, own) };
}

/**
 * A swarm stack when the sidecar is a task of one, or when the configured name is not a compose project on
 * this engine but a stack's services carry it.
 */
async function isSwarmStack(docker: Docker, project: string, self: SelfInfo | null): Promise<boolean> {
  if (ownStack(self) === project) return true;
  if (self?.labels['com.docker.compose.project'] === project) return false;
  const compose = await docker.listContainers({
    all: true,
    filters: { label: [`com.docker.compose.project=${project}`] },
  });
  if (compose.length > 0) return false;
  // Not a manager (or no swarm): listing services fails, and this is taken for a compose project.
  const services = await docker
    .listServices({ filters: { label: [`${STACK_LABEL}=${project}`] } })
    .catch(() => []);
  return services.length > 0;
}

/** The compose shape of a swarm stack: task containers on this node, volumes named `<stack>_<name>`. */
async function swarmStack(
  docker: Docker,
  project: string,
  config: Pick<Config, 'volumes'>,
  self: SelfInfo | null,
): Promise<Stack> {
  const found = await discoverSwarm(docker, project, self);
  const containers: ServiceContainer[] = found.containers
    .map(({ info, service, labels, dependsOn, swarm }) => ({
      id: info.Id,
      name: (info.Names[0] ?? info.Id).replace(/^\//, ''),
      service,
      image: info.Image,
      imageId: info.ImageID,
      state: info.State,
      labels,
      dependsOn,
      mounts: (info.Mounts ?? [])
        .filter((m) => m.Type === 'volume' && m.Name)
        .map((m) => ({ volume: m.Name as string, destination: m.Destination })),
      swarm,
    }))
    .sort((a, b) => a.name.localeCompare(b.name));
  const byName = new Map<string, VolumeTarget>();
  const add = (name: string) => {
    const short = name.startsWith(`${project}_`) ? name.slice(project.length + 1) : name;
    if (!byName.has(name)) byName.set(name, { name, short, mountedBy: [] });
    return byName.get(name) as VolumeTarget;
  };
  for (const v of found.volumes) add(v);
  for (const c of containers)
    for (const m of c.mounts)
      add(m.volume).mountedBy.push({ container: c.name, service: c.service, destination: m.destination });
  // A service with no task on this node (or scaled to 0) still names its volumes in its spec.
  for (const m of found.specMounts)
    if (!byName.get(m.volume)?.mountedBy.some((x) => x.service === m.service))
      add(m.volume).mountedBy.push({ container: m.service, service: m.service, destination: m.destination });
  return { ...finish(project, containers, byName, config, self), kind: 'swarm' };
}

export function selectVolumes(
  all: VolumeTarget[],
  wanted: string[],
  self: SelfInfo | null,
  own: Set<string>,
): VolumeTarget[] {
  if (wanted.length > 0) {
    return wanted.map((w) => {
      const v = all.find((x) => x.short === w || x.name === w);
      if (!v) {
        throw new SidecarError(
          'VOLUME_NOT_FOUND',
          `volume "${w}" is not a volume of this project`,
          `known volumes: ${all.map((x) => x.short).join(', ') || '(none)'}; fix BACKUP_VOLUMES`,
        );
      }
      return v;
    });
  }
  // offen/docker-volume-backup's convention: volumes mounted into the sidecar under /backup/<name>.
  const backupMounts = (self?.volumeMounts ?? []).filter((m) => /^\/backup\/[^/]+\/?$/.test(m.destination));
  if (backupMounts.length > 0) {
    return backupMounts.map((m) => {
      const found = all.find((x) => x.name === m.name);
      const short = m.destination.replace(/^\/backup\//, '').replace(/\/$/, '');
      return { name: m.name, short, mountedBy: found?.mountedBy ?? [] };
    });
  }
  return all.filter((v) => !own.has(v.name));
}

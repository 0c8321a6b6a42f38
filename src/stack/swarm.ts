import type Docker from 'dockerode';
import { SidecarError } from '../common/errors.js';
import { LABELS } from '../docker/labels.js';
import type { SelfInfo } from '../docker/self.js';
import { swarmLabels } from './swarm-labels.js';
import { databaseServices } from './swarm-order.js';

/** The label `docker stack deploy` puts on a stack's services, task containers, networks and volumes. */
export const STACK_LABEL = 'com.docker.stack.namespace';
export const SWARM_SERVICE_ID = 'com.docker.swarm.service.id';
export const SWARM_SERVICE_NAME = 'com.docker.swarm.service.name';

/** What a task container knows of its swarm service: enough to scale it and to find its next task. */
export interface SwarmServiceRef {
  id: string;
  /** Full service name, e.g. moodle_moodle. */
  name: string;
  /** null for a global service: it has no replica count to scale to 0. */
  replicas: number | null;
}

/** The stack a sidecar running as a swarm task belongs to (its own task container's label). */
export function ownStack(self: SelfInfo | null): string | undefined {
  return self?.labels[STACK_LABEL];
}

/**
 * The sidecar drives a swarm through the manager API (services, tasks), which workers do not serve. Refuses
 * with the fix when this engine is not a manager.
 */
export async function assertManager(docker: Docker, stack: string): Promise<void> {
  const info = (await docker.info()) as { Swarm?: { LocalNodeState?: string; ControlAvailable?: boolean } };
  const state = info.Swarm?.LocalNodeState ?? 'inactive';
  if (state !== 'active') {
    throw new SidecarError(
      'SWARM_NOT_MANAGER',
      `stack ${stack} is a swarm stack, and this Docker engine is not part of a swarm (node state: ${state})`,
      'run the sidecar on a manager node of the swarm (docker stack deploy), or use BACKUP_PROJECT for a compose project',
    );
  }
  if (info.Swarm?.ControlAvailable !== true) {
    throw new SidecarError(
      'SWARM_NOT_MANAGER',
      `the sidecar of stack ${stack} runs on a swarm worker node; scaling services needs a manager`,
      'add `deploy: {placement: {constraints: [node.role == manager]}}` to the backup service and redeploy the stack',
    );
  }
}

type SpecMounts = { ContainerSpec?: { Mounts?: { Type?: string; Source?: string; Target: string }[] } };

export interface SwarmDiscovery {
  containers: {
    info: Docker.ContainerInfo;
    service: string;
    labels: Record<string, string>;
    dependsOn: string[];
    swarm: SwarmServiceRef;
  }[];
  /** Volume names the stack's service specs mount, with the service mounting them and where. */
  specMounts: { volume: string; service: string; destination: string }[];
  /** Volume names labelled with the stack. */
  volumes: string[];
}

/**
 * A swarm stack as the sidecar sees it: its services (by `com.docker.stack.namespace`), their task containers
 * on this node (running or paused: exited ones are task history), and the volumes they mount. The sidecar's
 * own service is left out. Labels: `deploy.labels` (the service's) and `labels` (the container's) merged.
 */
export async function discoverSwarm(
  docker: Docker,
  stack: string,
  self: SelfInfo | null,
): Promise<SwarmDiscovery> {
  await assertManager(docker, stack);
  const services = await docker.listServices({ filters: { label: [`${STACK_LABEL}=${stack}`] } });
  const ownService = self?.labels[SWARM_SERVICE_ID];
  const byId = new Map(services.filter((s) => s.ID !== ownService).map((s) => [s.ID, s]));
  const listed = await docker.listContainers({
    all: true,
    filters: { label: [`${STACK_LABEL}=${stack}`], status: ['running', 'paused', 'restarting'] },
  });
  const short = (name: string) => (name.startsWith(`${stack}_`) ? name.slice(stack.length + 1) : name);
  const containers = listed
    .filter((c) => c.Id !== self?.id && byId.has(c.Labels[SWARM_SERVICE_ID] ?? ''))
    .map((info) => {
      const svc = byId.get(info.Labels[SWARM_SERVICE_ID] ?? '') as Docker.Service;
      const name = svc.Spec?.Name ?? '';
      const replicated = svc.Spec?.Mode?.Replicated;
      return {
        info,
        service: short(name),
        labels: swarmLabels(info, svc),
        dependsOn: [] as string[],
        swarm: { id: svc.ID, name, replicas: replicated ? (replicated.Replicas ?? 1) : null },
      };
    });
  await orderServices(docker, containers);
  const specMounts = [...byId.values()].flatMap((s) =>
    ((s.Spec?.TaskTemplate as SpecMounts | undefined)?.ContainerSpec?.Mounts ?? [])
      .filter((m) => m.Type === 'volume' && m.Source)
      .map((m) => ({
        volume: m.Source as string,
        service: short(s.Spec?.Name ?? ''),
        destination: m.Target,
      })),
  );
  const { Volumes } = await docker.listVolumes({ filters: { label: [`${STACK_LABEL}=${stack}`] } });
  return { containers, specMounts, volumes: (Volumes ?? []).map((v) => v.Name) };
}

/**
 * `docker stack deploy` drops `depends_on`, so the stop order comes from our `moodle-backup.depends-on` label
 * when any service has one; otherwise the services that run a database server go last (Moodle before
 * MariaDB, as in compose).
 */
async function orderServices(
  docker: Docker,
  containers: {
    labels: Record<string, string>;
    service: string;
    dependsOn: string[];
    info: Docker.ContainerInfo;
  }[],
): Promise<void> {
  const labelled = containers.filter((c) => c.labels[LABELS.dependsOn] !== undefined);
  if (labelled.length > 0) {
    for (const c of containers)
      c.dependsOn = (c.labels[LABELS.dependsOn] ?? '')
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
    return;
  }
  const dbs = await databaseServices(docker, containers);
  for (const c of containers) c.dependsOn = dbs.has(c.service) ? [] : [...dbs];
}

/**
 * The container to exec into for a discovered task: itself while it runs, else a running task of the same
 * service on this node (scaling to 0 and back replaces every task container).
 */
export async function liveTask(docker: Docker, c: { id: string; swarm?: SwarmServiceRef }): Promise<string> {
  if (!c.swarm) return c.id;
  const running = await docker.listContainers({
    filters: { label: [`${SWARM_SERVICE_ID}=${c.swarm.id}`], status: ['running'] },
  });
  if (running.some((x) => x.Id === c.id)) return c.id;
  return running[0]?.Id ?? c.id;
}

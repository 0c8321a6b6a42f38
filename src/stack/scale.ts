import { setTimeout as sleep } from 'node:timers/promises';
import type Docker from 'dockerode';
import { dockerStatus } from '../docker/client.js';
import { SWARM_SERVICE_ID } from './swarm.js';

/** Task states that hold (or are about to hold) a running container. */
const LIVE = new Set(['new', 'pending', 'assigned', 'accepted', 'preparing', 'ready', 'starting', 'running']);
const UPDATE_ATTEMPTS = 5;
const POLL_MS = 250;

/** A service's replica count as its spec says now; null for a global service or one that is gone. */
export async function currentReplicas(docker: Docker, id: string): Promise<number | null> {
  const svc = (await docker.getService(id).inspect()) as Docker.Service;
  return svc.Spec?.Mode?.Replicated ? (svc.Spec.Mode.Replicated.Replicas ?? 1) : null;
}

/**
 * Sets a replicated service's replica count (what `docker service scale` does): the spec is sent back whole
 * with the version index it was read at, so a concurrent change is not overwritten; on "update out of
 * sequence" it is read again and retried (bounded).
 */
export async function setReplicas(docker: Docker, id: string, replicas: number): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const svc = (await docker.getService(id).inspect()) as Docker.Service;
    const spec = svc.Spec;
    if (!spec?.Mode?.Replicated) throw new Error(`service ${spec?.Name ?? id} is not replicated`);
    if (spec.Mode.Replicated.Replicas === replicas) return;
    const body = { ...spec, Mode: { Replicated: { Replicas: replicas } } };
    try {
      // docker-modem: `_query` goes into the URL (the version index), `_body` is the JSON body.
      await docker.getService(id).update({ _query: { version: svc.Version?.Index }, _body: body } as never);
      return;
    } catch (err) {
      const outOfSequence = dockerStatus(err) === 500 && /out of sequence/i.test((err as Error).message);
      if (!outOfSequence || attempt >= UPDATE_ATTEMPTS) throw err;
    }
  }
}

/** Waits (bounded) until no task of the service holds a live container, cluster-wide and on this node. */
export async function waitTasksGone(
  docker: Docker,
  id: string,
  name: string,
  timeoutMs: number,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const live = (await tasksOf(docker, id)).filter((t) => LIVE.has(t.Status?.State ?? ''));
    const local = await docker.listContainers({
      filters: { label: [`${SWARM_SERVICE_ID}=${id}`], status: ['running', 'paused', 'restarting'] },
    });
    if (live.length === 0 && local.length === 0) return;
    if (Date.now() > end)
      throw new Error(
        `${name}: ${live.length} task(s) still running ${timeoutMs / 1000} s after scaling to 0`,
      );
    await sleep(POLL_MS);
  }
}

/** Waits (bounded) until `replicas` tasks of the service run; a task that fails to start fails at once. */
export async function waitTasksRunning(
  docker: Docker,
  id: string,
  name: string,
  replicas: number,
  timeoutMs: number,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const wanted = (await tasksOf(docker, id)).filter((t) => t.DesiredState === 'running');
    const running = wanted.filter((t) => t.Status?.State === 'running').length;
    if (running >= replicas) return;
    if (Date.now() > end) {
      const states = wanted.map((t) => `${t.Status?.State}${t.Status?.Err ? ` (${t.Status.Err})` : ''}`);
      throw new Error(
        `${name}: ${running} of ${replicas} task(s) running after ${timeoutMs / 1000} s [${states.join(', ')}]`,
      );
    }
    await sleep(POLL_MS);
  }
}

interface TaskInfo {
  DesiredState?: string;
  Status?: { State?: string; Err?: string };
}

async function tasksOf(docker: Docker, id: string): Promise<TaskInfo[]> {
  try {
    return (await docker.listTasks({ filters: { service: [id] } })) as TaskInfo[];
  } catch (err) {
    // The service was removed (docker stack rm): it has no tasks.
    if (dockerStatus(err) === 404) return [];
    throw err;
  }
}

/**
 * How long a scaled-down service's tasks may take to stop: the stop timeout (swarm's own `stop_grace_period`
 * applies to each task) plus a margin for the orchestrator.
 */
export function goneTimeoutMs(stopTimeoutSeconds: number): number {
  return (stopTimeoutSeconds + 60) * 1000;
}

/** A service removed while it was scaled to 0: nothing is left to scale back. */
export class ServiceGone extends Error {}

/** Sets a replicated service back to `replicas` (the caller waits for its tasks: waitTasksRunning). */
export async function scaleBack(docker: Docker, id: string, name: string, replicas: number): Promise<void> {
  try {
    await setReplicas(docker, id, replicas);
  } catch (err) {
    if (dockerStatus(err) === 404)
      throw new ServiceGone(
        `service ${name} was removed while scaled to 0 (docker stack rm?); deploy the stack again (docker stack deploy)`,
      );
    throw err;
  }
}

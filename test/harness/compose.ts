import { setTimeout as sleep } from 'node:timers/promises';
import type Docker from 'dockerode';
import { inject } from 'vitest';
import { docker, execIn, TEST_LABEL } from './docker.js';

/** Labels as `docker compose up` sets them, plus this test run's label. */
export function composeLabels(project: string, service: string, dependsOn?: string): Record<string, string> {
  return {
    'com.docker.compose.project': project,
    'com.docker.compose.service': service,
    'com.docker.compose.container-number': '1',
    'com.docker.compose.oneoff': 'False',
    'com.docker.compose.project.working_dir': `/srv/${project}`,
    ...(dependsOn ? { 'com.docker.compose.depends_on': `${dependsOn}:service_started:false` } : {}),
    [TEST_LABEL]: inject('runId'),
  };
}

async function exists(what: Promise<unknown>): Promise<boolean> {
  return what.then(
    () => true,
    () => false,
  );
}

/**
 * The compose-labelled network and `<project>_<name>` volumes of `project`, as `docker compose up` makes
 * them. Existing ones are adopted as Compose does: a restore onto a fresh host creates the volumes before
 * the stack exists, and a test may bring the same project up again.
 */
export async function createProjectResources<V extends string>(
  project: string,
  volumeNames: readonly V[],
  d: Docker = docker(),
): Promise<{ network: string; volumes: Record<V, string> }> {
  const network = `${project}_default`;
  if (!(await exists(d.getNetwork(network).inspect()))) {
    await d.createNetwork({
      Name: network,
      Labels: {
        'com.docker.compose.project': project,
        'com.docker.compose.network': 'default',
        [TEST_LABEL]: inject('runId'),
      },
    });
  }
  const volumes = {} as Record<V, string>;
  for (const v of volumeNames) {
    volumes[v] = `${project}_${v}`;
    if (await exists(d.getVolume(volumes[v]).inspect())) continue;
    await d.createVolume({
      Name: volumes[v],
      Labels: {
        'com.docker.compose.project': project,
        'com.docker.compose.volume': v,
        [TEST_LABEL]: inject('runId'),
      },
    });
  }
  return { network, volumes };
}

export interface ServiceSpec {
  /** Container name, `<project>-<service>-1`. */
  name: string;
  image: string;
  /** The service name: its alias on the project network. */
  service: string;
  network: string;
  binds: string[];
  env: string[];
  labels: Record<string, string>;
  user?: string;
  restart?: 'unless-stopped' | 'always';
  /** Seconds; Compose's `stop_grace_period` (default here 60). */
  stopTimeout?: number;
}

/** Creates (does not start) one service's container on the project network, as Compose would. */
export function createService(d: Docker, s: ServiceSpec): Promise<Docker.Container> {
  return d.createContainer({
    name: s.name,
    Image: s.image,
    ...(s.user ? { User: s.user } : {}),
    Env: s.env,
    Labels: s.labels,
    HostConfig: {
      Binds: s.binds,
      NetworkMode: s.network,
      ...(s.restart ? { RestartPolicy: { Name: s.restart } } : {}),
    },
    NetworkingConfig: { EndpointsConfig: { [s.network]: { Aliases: [s.service] } } },
    StopTimeout: s.stopTimeout ?? 60,
  });
}

/** Waits (30 s at most) until `path` exists in the container: a stand-in's entrypoint has populated it. */
export async function waitForFile(container: string, path: string, client?: Docker): Promise<void> {
  const end = Date.now() + 30_000;
  while (Date.now() < end) {
    if ((await execIn(container, ['test', '-f', path], { client })).exitCode === 0) return;
    await sleep(200);
  }
  throw new Error(`${path} did not appear in ${container}`);
}

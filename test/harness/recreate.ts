import type Docker from 'dockerode';
import { docker } from './docker.js';

/** What it takes to create a container again as Compose would: image, env, labels, mounts, network alias. */
export async function captureContainer(name: string): Promise<Docker.ContainerCreateOptions> {
  const old = await docker().getContainer(name).inspect();
  const network = old.HostConfig.NetworkMode ?? 'default';
  const aliases: string[] = old.NetworkSettings.Networks[network]?.Aliases ?? [];
  return {
    name,
    Image: old.Config.Image,
    Env: old.Config.Env,
    Labels: { ...old.Config.Labels },
    HostConfig: { Binds: old.HostConfig.Binds ?? [], NetworkMode: network },
    // Docker adds the short id as an alias itself.
    NetworkingConfig: {
      EndpointsConfig: { [network]: { Aliases: aliases.filter((a) => !old.Id.startsWith(a)) } },
    },
    StopTimeout: (old.Config as { StopTimeout?: number }).StopTimeout ?? 60,
  };
}

/**
 * What `docker compose up -d` does when a service's labels change: stop and remove the container, create it
 * again under the same name with the new labels (same image, env, mounts, network alias) and start it.
 * `labels` are merged over the current ones; a value of null removes that label.
 */
export async function recreateWithLabels(
  name: string,
  labels: Record<string, string | null>,
): Promise<Docker.ContainerInspectInfo> {
  const d = docker();
  const spec = await captureContainer(name);
  const merged: Record<string, string> = { ...spec.Labels };
  for (const [k, v] of Object.entries(labels)) {
    if (v === null) delete merged[k];
    else merged[k] = v;
  }
  await d
    .getContainer(name)
    .stop({ t: 30 })
    .catch(() => undefined);
  await d.getContainer(name).remove({ force: true, v: true });
  const created = await d.createContainer({ ...spec, Labels: merged });
  await created.start();
  return created.inspect();
}

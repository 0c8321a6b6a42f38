import Docker from 'dockerode';
import { SidecarError } from '../common/errors.js';

/** A Docker client from DOCKER_HOST or the default socket. */
export function createDocker(): Docker {
  return new Docker();
}

/** Fails early, with a hint, when the engine does not answer (socket not mounted, daemon down). */
export async function assertDockerAvailable(docker: Docker): Promise<void> {
  try {
    await docker.ping();
  } catch (err) {
    throw new SidecarError(
      'DOCKER_UNAVAILABLE',
      `the Docker engine does not answer (${(err as Error).message})`,
      'mount the Docker socket into the sidecar (/var/run/docker.sock:/var/run/docker.sock) or set DOCKER_HOST',
      { cause: err },
    );
  }
}

/** HTTP status of a dockerode error, if any. */
export function dockerStatus(err: unknown): number | undefined {
  const code = (err as { statusCode?: unknown })?.statusCode;
  return typeof code === 'number' ? code : undefined;
}

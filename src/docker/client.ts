import { createRequire, Module } from 'node:module';
import { dirname } from 'node:path';
import type Docker from 'dockerode';
import { SidecarError } from '../common/errors.js';

const require = createRequire(import.meta.url);

/** A Docker client from DOCKER_HOST or the default socket. */
export function createDocker(): Docker {
  const Client = loadDockerode();
  return new Client();
}

/**
 * dockerode, with two of its modules loaded on first use instead of at start: the BuildKit session (gRPC and
 * protobufjs, 120 modules, for `buildImage` with BuildKit) and docker-modem's SSH transport (ssh2, 30 modules
 * and a native binding, for DOCKER_HOST=ssh://). Together ~0.15 s of CPU at every start, for features a
 * sidecar on the local socket never calls. Both modules export one function, which the stand-in forwards to.
 */
function loadDockerode(): typeof Docker {
  deferFunctionModule('dockerode/lib/session.js');
  deferFunctionModule('docker-modem/lib/ssh.js', 'dockerode');
  return require('dockerode') as typeof Docker;
}

/** Puts a stand-in for a module that exports one function into the require cache; the real one loads when called. */
function deferFunctionModule(request: string, via?: string): void {
  let path: string;
  try {
    path = require.resolve(request, via ? { paths: [dirname(require.resolve(`${via}/package.json`))] } : {});
  } catch {
    return; // laid out differently: the module loads with its parent, as before
  }
  if (require.cache[path]) return;
  let real: ((...args: unknown[]) => unknown) | undefined;
  const standIn = new Module(path);
  standIn.filename = path;
  standIn.loaded = true;
  standIn.exports = function (this: unknown, ...args: unknown[]): unknown {
    if (!real) {
      delete require.cache[path];
      real = require(path) as (...a: unknown[]) => unknown;
    }
    return real.apply(this, args);
  };
  require.cache[path] = standIn;
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

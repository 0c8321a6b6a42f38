import type Docker from 'dockerode';
import type { Logger } from '../observe/logger.js';

/** Docker counts a stop as killed when the process ended by SIGKILL (128 + 9). */
const KILLED = 137;

/**
 * Stops one container with its own stop timeout where it has one (Compose's `stop_grace_period` is Docker's
 * `StopTimeout`), the global setting otherwise, and warns when the stop ran into that timeout and Docker had
 * to kill: the stack then stays down that long on every run, and nothing else would say why.
 */
export async function stopContainer(
  docker: Docker,
  id: string,
  name: string,
  globalSeconds: number,
  log: Logger,
): Promise<void> {
  const c = docker.getContainer(id);
  const config = (await c.inspect().catch(() => null))?.Config as
    | { StopTimeout?: number; StopSignal?: string }
    | undefined;
  const own = config?.StopTimeout;
  const t = typeof own === 'number' && own >= 0 ? own : globalSeconds;
  const t0 = Date.now();
  await c.stop({ t });
  const ms = Date.now() - t0;
  const state = (await c.inspect().catch(() => null))?.State;
  if (state?.ExitCode !== KILLED || state.OOMKilled || ms < t * 1000 - 250) return;
  const signal = config?.StopSignal ?? 'SIGTERM';
  log.warn(
    { step: 'quiesce', container: name, timeoutSeconds: t, ms, exitCode: state.ExitCode },
    `${name} did not stop within ${t} s of ${signal}, so Docker killed it: the stack stays down that long on every ` +
      `run. Its main process ignores ${signal} (often a shell entrypoint that does not exec the server): add ` +
      '`init: true` to the service, or set the `stop_signal` it does handle, or a shorter `stop_grace_period`',
  );
}

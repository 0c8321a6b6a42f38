import type Docker from 'dockerode';
import { SidecarError } from '../common/errors.js';
import type { Logger } from '../observe/logger.js';
import { currentReplicas, setReplicas, waitTasksGone } from './scale.js';
import type { QuiescedContainer, StateStore } from './state.js';
import type { SwarmServiceRef } from './swarm.js';

/**
 * A global service runs one task per node and has no replica count: it cannot be scaled to 0, and a task
 * stopped by hand is started again by swarm at once. Refused before anything changes; pausing it is fine.
 */
export function assertScalable(actions: { action: string; container: { swarm?: SwarmServiceRef } }[]): void {
  const global = [
    ...new Set(
      actions
        .filter((a) => a.action === 'stop' && a.container.swarm?.replicas === null)
        .map((a) => a.container.swarm?.name),
    ),
  ];
  if (global.length === 0) return;
  throw new SidecarError(
    'SWARM_UNSUPPORTED',
    `global service${global.length > 1 ? 's' : ''} ${global.join(', ')} cannot be stopped for the backup: swarm runs a global service's task on every node and restarts a stopped one`,
    'make it replicated (deploy: {mode: replicated, replicas: 1}), or keep it running with the deploy label moodle-backup.stop=false, or freeze it with moodle-backup.mode=pause; nothing was stopped',
  );
}

/**
 * Scales one swarm service to 0 and waits until its tasks are gone. Its replica count is recorded in the state
 * file first, so a sidecar killed from here on scales it back on its next start (recover/run.ts). A service
 * already scaled by this run (a second task of it) is skipped.
 */
export async function scaleDown(
  docker: Docker,
  ref: SwarmServiceRef,
  done: QuiescedContainer[],
  opts: { state: StateStore; log: Logger },
  timeoutMs: number,
): Promise<void> {
  if (done.some((q) => q.action === 'scale' && q.id === ref.id)) return;
  const replicas = (await currentReplicas(docker, ref.id)) ?? ref.replicas ?? 1;
  if (replicas === 0) return;
  const entry: QuiescedContainer = { id: ref.id, name: ref.name, action: 'scale', replicas };
  done.push(entry);
  await opts.state.update((s) => {
    s.quiesced.push(entry);
  });
  const t0 = Date.now();
  await setReplicas(docker, ref.id, 0);
  await waitTasksGone(docker, ref.id, ref.name, timeoutMs);
  opts.log.info(
    { step: 'quiesce', service: ref.name, action: 'scale', replicas, ms: Date.now() - t0 },
    `scaled ${ref.name} from ${replicas} to 0`,
  );
}

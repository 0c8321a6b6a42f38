import type Docker from 'dockerode';
import { SidecarError } from '../common/errors.js';
import { LABELS } from '../docker/labels.js';
import type { Logger } from '../observe/logger.js';
import {
  currentReplicas,
  ServiceGone,
  scaleBack,
  setReplicas,
  waitTasksGone,
  waitTasksRunning,
} from './scale.js';
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
 * A global service labelled `moodle-backup.stop=false` keeps running even where everything that mounts a
 * volume stops (restore, the stop fallback): it cannot be stopped, and its label says it need not be.
 */
export function keepsRunning(c: { labels: Record<string, string>; swarm?: SwarmServiceRef }): boolean {
  return c.swarm?.replicas === null && c.labels[LABELS.stop] === 'false';
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

/** Time for a scaled-back service's tasks to run: images are on the node, so this is start-up time. */
const RUNNING_TIMEOUT_MS = 120_000;

/**
 * Scales services back in the order given (dependencies first), then waits for all of their tasks at once:
 * swarm starts a service's tasks without regard to other services anyway, and waiting for each in turn
 * would add every service's start-up time to the downtime. Returns who is settled and what failed.
 */
export async function resumeScaled(
  docker: Docker,
  entries: QuiescedContainer[],
  log: Logger,
): Promise<{ settled: string[]; failures: string[] }> {
  const settled: string[] = [];
  const failures: string[] = [];
  const waiting: { q: QuiescedContainer; t0: number }[] = [];
  for (const q of entries) {
    const t0 = Date.now();
    try {
      await scaleBack(docker, q.id, q.name, q.replicas ?? 1);
      waiting.push({ q, t0 });
    } catch (err) {
      if (err instanceof ServiceGone) settled.push(q.id);
      failures.push(`${q.name}: ${(err as Error).message}`);
      log.error({ step: 'resume', service: q.name, err }, `could not scale ${q.name} back`);
    }
  }
  await Promise.all(
    waiting.map(async ({ q, t0 }) => {
      try {
        await waitTasksRunning(docker, q.id, q.name, q.replicas ?? 1, RUNNING_TIMEOUT_MS);
        settled.push(q.id);
        log.info(
          { step: 'resume', service: q.name, action: 'scale', replicas: q.replicas, ms: Date.now() - t0 },
          `scaled ${q.name} back to ${q.replicas}`,
        );
      } catch (err) {
        failures.push(`${q.name}: ${(err as Error).message}`);
        log.error({ step: 'resume', service: q.name, err }, `${q.name} did not come back`);
      }
    }),
  );
  return { settled, failures };
}

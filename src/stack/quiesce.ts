import { setTimeout as sleep } from 'node:timers/promises';
import type Docker from 'dockerode';
import { SidecarError } from '../common/errors.js';
import { dockerStatus } from '../docker/client.js';
import type { Logger } from '../observe/logger.js';
import type { QuiescePlan } from './plan.js';
import { goneTimeoutMs } from './scale.js';
import type { QuiescedContainer, StateStore } from './state.js';
import { stopContainer } from './stop.js';
import { assertScalable, resumeScaled, scaleDown } from './swarm-quiesce.js';

/** Restarts what quiesce stopped. Idempotent; always called (success, failure, signal, next start). */
export type Resume = () => Promise<void>;

export interface QuiesceOptions {
  /** For containers without a stop timeout of their own. */
  stopTimeoutSeconds: number;
  state: StateStore;
  log: Logger;
}

/**
 * Stops or pauses the planned containers in order and returns the function that undoes it. The state
 * file records each container before it is touched, so a crash at any point can be resumed.
 * If a stop fails midway, what was already stopped is resumed before the error is thrown.
 */
export async function quiesce(docker: Docker, plan: QuiescePlan, opts: QuiesceOptions): Promise<Resume> {
  const done: QuiescedContainer[] = [];
  const resume = onceResume(docker, done, opts);
  assertScalable(plan.actions);
  try {
    for (const { container, action } of plan.actions) {
      // A swarm task is not stopped (swarm would start another one): its service is scaled to 0.
      if (container.swarm && action === 'stop') {
        await scaleDown(docker, container.swarm, done, opts, goneTimeoutMs(opts.stopTimeoutSeconds));
        continue;
      }
      const entry: QuiescedContainer = {
        id: container.id,
        name: container.name,
        action,
        ...(container.state === 'restarting' ? { wasRestarting: true } : {}),
      };
      done.push(entry);
      await opts.state.update((s) => {
        s.quiesced.push(entry);
      });
      const t0 = Date.now();
      const c = docker.getContainer(container.id);
      try {
        // Each container's own stop timeout where it has one (stop.ts), warning when Docker had to kill.
        if (action === 'stop')
          await stopContainer(docker, container.id, container.name, opts.stopTimeoutSeconds, opts.log);
        else await c.pause();
      } catch (err) {
        // 304: already stopped. 409 on pause: already paused — nothing to undo for us then.
        const status = dockerStatus(err);
        if (status === 409 && action === 'pause') done.pop();
        else if (status !== 304) throw err;
      }
      opts.log.info(
        { step: 'quiesce', container: container.name, action, ms: Date.now() - t0 },
        `${action} ${container.name}`,
      );
    }
  } catch (err) {
    await resume().catch((e: unknown) => opts.log.error({ err: e }, 'resume after failed quiesce failed'));
    throw new SidecarError(
      'QUIESCE_FAILED',
      `could not quiesce the stack: ${(err as Error).message}`,
      undefined,
      {
        cause: err,
      },
    );
  }
  return resume;
}

function onceResume(docker: Docker, done: QuiescedContainer[], opts: QuiesceOptions): Resume {
  let running: Promise<void> | undefined;
  return () => {
    running ??= resumeContainers(docker, [...done], opts);
    return running;
  };
}

/** Starts/unpauses containers in reverse stop order (dependencies first) and waits for each to run. */
export async function resumeContainers(
  docker: Docker,
  quiesced: QuiescedContainer[],
  opts: Pick<QuiesceOptions, 'log' | 'state'>,
): Promise<void> {
  const failures: string[] = [];
  const settled = new Set<string>();
  // Swarm services first (scaled back together), then containers; a stack is mostly one kind or the other.
  const scaled = await resumeScaled(
    docker,
    [...quiesced].reverse().filter((q) => q.action === 'scale'),
    opts.log,
  );
  for (const id of scaled.settled) settled.add(id);
  failures.push(...scaled.failures);
  for (const q of [...quiesced].reverse()) {
    if (q.action === 'scale') continue;
    const c = docker.getContainer(q.id);
    const t0 = Date.now();
    try {
      try {
        if (q.action === 'stop') await c.start();
        else await c.unpause();
      } catch (err) {
        const status = dockerStatus(err);
        if (status === 404) {
          // Removed while it was stopped (e.g. `docker compose down`): nothing is left to restart, and keeping
          // it in the state file would fail every later run's recovery too.
          settled.add(q.id);
          throw new Error(
            `${q.name} was removed while it was ${q.action === 'stop' ? 'stopped' : 'paused'} and cannot be restarted; recreate it (docker compose up -d)`,
          );
        }
        // 304: already running; 409 on unpause: not paused (someone else resumed it).
        if (status !== 304 && !(status === 409 && q.action === 'pause')) throw err;
      }
      await waitRunning(docker, q.id, 60_000, q.wasRestarting === true);
      settled.add(q.id);
      opts.log.info(
        { step: 'resume', container: q.name, action: q.action, ms: Date.now() - t0 },
        `resumed ${q.name}`,
      );
    } catch (err) {
      failures.push(`${q.name}: ${(err as Error).message}`);
      opts.log.error({ step: 'resume', container: q.name, err }, `could not resume ${q.name}`);
    }
  }
  await opts.state.update((s) => {
    s.quiesced = s.quiesced.filter((q) => !settled.has(q.id));
  });
  if (failures.length > 0) {
    throw new SidecarError(
      'RESUME_FAILED',
      `could not restart ${failures.join('; ')}`,
      'start them by hand (docker start / docker unpause); the state file keeps them listed until then',
    );
  }
}

async function waitRunning(
  docker: Docker,
  id: string,
  timeoutMs: number,
  restartingIsBack: boolean,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const info = await docker.getContainer(id).inspect();
    if (info.State.Running && !info.State.Paused && !info.State.Restarting) return;
    if (restartingIsBack && info.State.Restarting) return;
    if (!info.State.Running && info.State.Status === 'exited' && Date.now() > end - timeoutMs + 5000) {
      throw new Error(`exited with code ${info.State.ExitCode} after start`);
    }
    if (Date.now() > end)
      throw new Error(`not running after ${timeoutMs / 1000} s (state ${info.State.Status})`);
    await sleep(200);
  }
}

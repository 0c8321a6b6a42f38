import type Docker from 'dockerode';
import { SidecarError } from '../common/errors.js';
import { execCapture } from '../docker/exec.js';
import { LABELS } from '../docker/labels.js';
import type { Logger } from '../observe/logger.js';
import type { ServiceContainer, Stack } from './discover.js';
import { liveTask } from './swarm.js';

export interface Hook {
  container: ServiceContainer;
  phase: 'pre' | 'post';
  command: string;
}

/**
 * Hooks are plain data on labels: our `moodle-backup.pre` / `.post`, or offen's `docker-volume-backup.archive-pre`
 * / `.archive-post`. Pre hooks run in their container before anything is stopped, post hooks after the stack is
 * back — both in dependency order of discovery (container name).
 */
export function collectHooks(stack: Stack): { pre: Hook[]; post: Hook[] } {
  const pick = (c: ServiceContainer, phase: 'pre' | 'post'): Hook | null => {
    const command =
      c.labels[phase === 'pre' ? LABELS.pre : LABELS.post] ??
      c.labels[phase === 'pre' ? LABELS.offenPre : LABELS.offenPost];
    return command?.trim() ? { container: c, phase, command: command.trim() } : null;
  };
  const running = stack.containers.filter((c) => c.state === 'running');
  return {
    pre: running.map((c) => pick(c, 'pre')).filter((h): h is Hook => h !== null),
    post: running.map((c) => pick(c, 'post')).filter((h): h is Hook => h !== null),
  };
}

/** Runs hooks one by one with `sh -c`, logging their output; the first failure throws HOOK_FAILED. */
export async function runHooks(
  docker: Docker,
  hooks: Hook[],
  log: Logger,
  timeoutMs = 10 * 60_000,
): Promise<void> {
  for (const h of hooks) {
    const t0 = Date.now();
    let r: Awaited<ReturnType<typeof execCapture>>;
    try {
      // Post hooks of a swarm service run in its new task: scaling back replaced the container.
      r = await execCapture(docker, await liveTask(docker, h.container), ['sh', '-c', h.command], timeoutMs);
    } catch (err) {
      throw new SidecarError(
        'HOOK_FAILED',
        `${h.phase} hook in ${h.container.name} could not run: ${(err as Error).message}`,
        undefined,
        {
          cause: err,
        },
      );
    }
    const output = `${r.stdout}${r.stderr}`.trim().slice(-2000);
    log[r.exitCode === 0 ? 'info' : 'error'](
      {
        step: 'hook',
        phase: h.phase,
        container: h.container.name,
        exitCode: r.exitCode,
        ms: Date.now() - t0,
        output,
      },
      `${h.phase} hook in ${h.container.name} exited ${r.exitCode}`,
    );
    if (r.exitCode !== 0) {
      throw new SidecarError(
        'HOOK_FAILED',
        `${h.phase} hook in ${h.container.name} exited ${r.exitCode}: ${output.split('\n').pop() ?? ''}`,
        `check the hook command (label on ${h.container.name}); the run was aborted and the stack left running`,
      );
    }
  }
}

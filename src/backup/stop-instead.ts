import type { Config } from '../config/types.js';
import type { Logger } from '../observe/logger.js';
import type { Stack } from '../stack/discover.js';
import { type QuiescePlan, stopOrder } from '../stack/plan.js';
import { keepsRunning } from '../stack/swarm-quiesce.js';
import type { MoodlePlan } from './moodle-plan.js';

/** Restore's safety snapshot: the site may be broken, and is about to be replaced anyway. */
export interface SiteFallback {
  /** The snapshot being restored recorded a Moodle site: finding none running now means a broken one. */
  expectMoodle: boolean;
}

/** How the run keeps the site quiet: the quiesce plan, the mode recorded, the Moodle plan to follow. */
export interface QuietSite {
  plan: QuiescePlan;
  mode: Config['mode'];
  mp: MoodlePlan;
}

/**
 * Turns maintenance mode on. For restore's safety snapshot (`fallback`), a site whose own code cannot run —
 * config.php gone, database dropped, code volume empty, container crash-looping — is stopped instead, with
 * one warning: a restore must not depend on the code it is about to replace. The snapshot is then a
 * stop-mode copy of the broken state, so the user can roll back to exactly what they had.
 */
export async function maintenanceOrStop(
  stack: Stack,
  quiet: QuietSite,
  fallback: SiteFallback | undefined,
  log: Logger,
): Promise<QuietSite> {
  const { mp } = quiet;
  let why: string;
  if (!fallback || (!mp.site.moodle && !fallback.expectMoodle)) {
    await mp.maintenance.on();
    return quiet;
  }
  if (mp.site.moodle) {
    const err = await mp.maintenance.tryOn();
    if (!err) return quiet;
    why = err.message;
  } else {
    why = `no running container with Moodle's admin/cli/maintenance.php was found${notRunning(stack)}, so maintenance mode could not be turned on`;
  }
  log.warn(
    { step: 'maintenance', fallback: 'stop' },
    `${why}; the site is stopped instead for the pre-restore snapshot (it is being replaced)`,
  );
  return { plan: stopPlan(stack), mode: 'stop', mp: { ...mp, dump: null, tarVolumes: stack.volumes } };
}

function notRunning(stack: Stack): string {
  const down = stack.containers.filter((c) => c.state !== 'running');
  return down.length ? ` (${down.map((c) => `${c.name} is ${c.state}`).join(', ')})` : '';
}

/**
 * Every container that mounts a selected volume, crash-looping ones included, stopped (dependents first);
 * stop labels and pause are not honoured here: the site is being replaced.
 */
export function stopPlan(stack: Stack): QuiescePlan {
  const selected = new Set(stack.volumes.map((v) => v.name));
  const users = stack.containers.filter(
    (c) =>
      (c.state === 'running' || c.state === 'restarting') &&
      c.mounts.some((m) => selected.has(m.volume)) &&
      !keepsRunning(c),
  );
  return {
    actions: stopOrder(users).map((container) => ({ container, action: 'stop' as const })),
    selection: 'volume-mounts',
    warnings: [],
  };
}

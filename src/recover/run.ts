import type Docker from 'dockerode';
import { isSelf, ownerLiveness } from '../common/owner.js';
import { disableWhenUp } from '../moodle/maintenance.js';
import type { Logger } from '../observe/logger.js';
import { resumeContainers } from '../stack/quiesce.js';
import { type RunState, type StateStore, stateOwner } from '../stack/state.js';
import { settleInterrupted } from '../volume/swap.js';
import { sweepDeadHelpers } from './sweep-helpers.js';

/**
 * First thing on every start and every run: if an earlier run died (SIGKILL, OOM, host reboot) while it had
 * the stack stopped, start those containers again. Returns the interrupted run's state for reporting.
 */
export async function recoverInterrupted(
  docker: Docker,
  store: StateStore,
  log: Logger,
): Promise<RunState | null> {
  // Helpers and scratch volumes of any dead run, also a drill's (which writes no state file).
  await sweepDeadHelpers(docker, log).catch((err: unknown) =>
    log.warn({ step: 'recover', err }, 'could not look for leftover helper containers'),
  );
  const state = await store.read();
  if (!state) return null;
  if (runOwnerAlive(state)) return null;
  log.warn(
    {
      step: 'recover',
      runId: state.runId,
      operation: state.operation,
      containers: state.quiesced.map((q) => q.name),
    },
    `an interrupted ${state.operation} left ${state.quiesced.length} container(s) quiesced: resuming them`,
  );
  // A staged restore's volumes first: nothing of ours may be in a datadir when MariaDB starts (volume/swap.ts).
  const settled = state.swaps
    ? await settleInterrupted(state.swaps, (msg, f) => log.error({ step: 'recover', ...f }, msg))
    : { states: {}, later: [] };
  if (state.quiesced.length > 0) await resumeContainers(docker, state.quiesced, { log, state: store });
  if (state.maintenance) {
    // After the containers are back: maintenance.php needs the Moodle container running.
    await disableWhenUp(docker, state.maintenance, log).then(
      () =>
        log.warn(
          { step: 'recover', container: state.maintenance?.name },
          'turned off the maintenance mode the interrupted run had turned on',
        ),
      (err: unknown) => log.error({ step: 'recover', err }, (err as Error).message),
    );
  }
  if (state.operation === 'restore' && state.volumes) {
    const unfinished = Object.entries(state.volumes).filter(([, s]) => s !== 'restored');
    if (unfinished.length > 0) {
      log.error(
        { step: 'recover', volumes: state.volumes, safetySnapshot: state.safetySnapshot },
        `an interrupted restore left volumes incomplete (${unfinished.map(([v, s]) => `${v}: ${s}${settled.states[v] ? `, now ${settled.states[v]}` : ''}`).join(', ')})` +
          (state.safetySnapshot ? `; roll back with: restore ${state.safetySnapshot} --yes` : ''),
      );
    }
  }
  for (const finish of settled.later) {
    await finish().catch((err: unknown) => log.warn({ step: 'recover', err }, (err as Error).message));
  }
  await store.clear();
  return state;
}

/**
 * Whether a live run other than this process owns the state file. This process's own state counts as
 * dead: recovery runs at a command's start or under the run lock, never while this process runs one. Another
 * host's run counts as dead too, as for the run lock (lock.ts): a state directory belongs to one sidecar, and
 * a recreated sidecar container has a new host name.
 */
export function runOwnerAlive(state: RunState): boolean {
  const owner = stateOwner(state);
  return !isSelf(owner) && ownerLiveness(owner) === 'alive';
}

/** What an interrupted run left stopped, for /healthz while it is being recovered. */
export function recoverInterruptedNote(state: RunState): string {
  return `an interrupted ${state.operation} (run ${state.runId}) left ${state.quiesced.map((q) => q.name).join(', ')} stopped`;
}

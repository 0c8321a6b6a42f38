import { describeError, isSidecarError } from '../common/errors.js';
import { isSelf, ownerLiveness } from '../common/owner.js';
import { recoverInterruptedNote } from '../recover/run.js';
import { StateStore, stateOwner } from '../stack/state.js';
import { withRunLock } from './lock.js';
import { type RunnerDeps, recoverLeftovers } from './runner.js';

/** How often `serve` reads the state file: cheap (one small file), and the site is down meanwhile. */
export const ORPHAN_CHECK_MS = 2_000;

export interface OrphanWatchDeps extends Pick<RunnerDeps, 'docker' | 'log' | 'stateDir' | 'configs'> {
  /** /healthz: why the stack is down, or null once it runs again. */
  setStackDown(reason: string | null): void;
}

/**
 * `serve` keeps running while a `docker exec … backup` or `restore` beside it is killed (SIGKILL, OOM) with
 * the stack stopped: no command start will recover that, and the next scheduled run may be hours away. Every
 * few seconds this reads the state file; when its owner is dead, it takes the run lock (so it never races a
 * live run) and runs the same recovery as a scheduled run's start.
 */
export class OrphanWatch {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly deps: OrphanWatchDeps,
    private readonly everyMs = ORPHAN_CHECK_MS,
  ) {}

  start(): void {
    this.timer = setInterval(() => {
      // One check at a time: a recovery can take longer than the interval.
      if (this.running || this.stopped) return;
      this.running = this.check().finally(() => {
        this.running = undefined;
      });
    }, this.everyMs);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.running;
  }

  /** One look at the state file, and a recovery when a dead run left it. Never throws. */
  async check(): Promise<void> {
    const { log } = this.deps;
    const state = await new StateStore(this.deps.stateDir).read().catch(() => null);
    const owner = state && stateOwner(state);
    // A live run (ours included: a scheduled run of this process) is never interrupted by this.
    if (!state || !owner || isSelf(owner) || ownerLiveness(owner) === 'alive') {
      this.deps.setStackDown(null);
      return;
    }
    if (state.quiesced.length > 0) this.deps.setStackDown(recoverInterruptedNote(state));
    try {
      await withRunLock({ config: { stateDir: this.deps.stateDir } }, 'recovery', () =>
        recoverLeftovers(this.deps),
      );
      this.deps.setStackDown(null);
    } catch (err) {
      // LOCKED: a run started meanwhile; it recovers first thing itself (openContext, runJob).
      if (isSidecarError(err, 'LOCKED')) return;
      const why = describeError(err);
      log.error({ step: 'recover', code: isSidecarError(err) ? err.code : 'UNEXPECTED' }, why);
      if (state.quiesced.length > 0)
        this.deps.setStackDown(`${recoverInterruptedNote(state)}; recovery failed: ${why}`);
    }
  }
}

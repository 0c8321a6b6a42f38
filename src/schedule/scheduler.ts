import { Cron } from 'croner';
import { listSnapshots } from '../archive/catalog.js';
import type { Manifest } from '../archive/manifest.js';
import { runBackup } from '../backup.js';
import type { RunContext } from '../cli/context.js';
import type { Config } from '../config/types.js';
import { recoverInterrupted } from '../docker/recover.js';
import { StateStore } from '../docker/state.js';
import { describeError, isSidecarError, SidecarError } from '../errors.js';
import type { HealthState } from '../observe/health.js';
import type { BackupMetrics } from '../observe/metrics.js';
import type { Notifier } from '../observe/notify.js';
import { prune } from '../retention/prune.js';
import { withRunLock } from './lock.js';

/** Time a due run gets to finish before it counts as missed. */
export const STALE_GRACE_MS = 10 * 60_000;
const DEFAULT_STALE_CHECK_MS = 60_000;

/** Validates a cron expression (5 fields, 6 with seconds first, or @daily etc.); returns a paused job. */
export function parseSchedule(expr: string): Cron {
  let cron: Cron;
  try {
    cron = new Cron(expr, { paused: true });
  } catch (err) {
    throw new SidecarError(
      'CONFIG_INVALID',
      `BACKUP_CRON_EXPRESSION "${expr}" is not a cron expression: ${(err as Error).message}`,
      'use five fields (minute hour day month weekday, e.g. "0 2 * * *"), six with seconds first, or @daily',
    );
  }
  if (cron.nextRun() === null) {
    cron.stop();
    throw new SidecarError('CONFIG_INVALID', `BACKUP_CRON_EXPRESSION "${expr}" never fires`);
  }
  return cron;
}

/**
 * When a success at `ref` turns stale. An explicit healthStaleAfterSeconds wins; otherwise two scheduled runs
 * after `ref` must have been missed, plus a grace for the run itself: 2× the interval for a regular cron,
 * and correct for irregular ones (weekdays only) too. Without either, staleness is not checked.
 */
export function staleDeadline(config: Config, cron?: Cron): ((ref: Date) => Date | null) | undefined {
  const fixed = config.healthStaleAfterSeconds;
  if (fixed !== undefined) return (ref) => new Date(ref.getTime() + fixed * 1000);
  if (!cron) return undefined;
  return (ref) => {
    const first = cron.nextRun(ref);
    const second = first ? cron.nextRun(first) : null;
    return second ? new Date(second.getTime() + STALE_GRACE_MS) : null;
  };
}

export interface SchedulerOptions {
  ctx: RunContext;
  metrics: BackupMetrics;
  health: HealthState;
  notifier: Notifier;
  /** Validated schedule (parseSchedule); undefined = runs only by `docker exec … backup`. */
  schedule?: string;
  /** Check for staleness this often (bounded; default 60 s); only when the health state has a deadline. */
  staleCheckMs?: number;
  staleEnabled?: boolean;
}

/**
 * Scheduled runs for `serve`: croner triggers, `protect` drops a trigger while the previous run is busy, and
 * the run lock keeps scheduled runs away from `docker exec` runs in other processes.
 */
export class BackupScheduler {
  private job: Cron | null = null;
  private running: Promise<void> | null = null;
  private staleTimer: NodeJS.Timeout | null = null;
  private staleNotified = false;
  private checking = false;

  constructor(private readonly opts: SchedulerOptions) {}

  start(): void {
    const { schedule, ctx } = this.opts;
    if (schedule) {
      this.job = new Cron(
        schedule,
        {
          protect: () => {
            this.opts.metrics.recordSkipped();
            ctx.log.warn(
              { step: 'schedule' },
              'previous scheduled backup still running: this trigger is skipped',
            );
          },
          catch: (err) => ctx.log.error({ step: 'schedule', err }, `scheduler: ${describeError(err)}`),
        },
        () => this.trigger(),
      );
    }
    if (this.opts.staleEnabled) {
      const every = Math.min(Math.max(this.opts.staleCheckMs ?? DEFAULT_STALE_CHECK_MS, 1_000), 300_000);
      this.staleTimer = setInterval(() => void this.checkStale(), every);
    }
  }

  nextRun(): Date | null {
    return this.job?.nextRun() ?? null;
  }

  /** Stops triggering and waits for a running backup, which ctx.signal aborts (the stack is resumed). */
  async stop(): Promise<void> {
    this.job?.stop();
    if (this.staleTimer) clearInterval(this.staleTimer);
    await this.running;
  }

  private trigger(): Promise<void> {
    const run = this.runScheduled().finally(() => {
      this.running = null;
    });
    this.running = run;
    return run;
  }

  private async runScheduled(): Promise<void> {
    const { ctx, metrics, health, notifier } = this.opts;
    const { log, signal } = ctx;
    if (signal.aborted) return;
    let manifest: Manifest;
    try {
      manifest = await withRunLock(ctx, 'backup', async () => {
        // Also covers a `docker exec … backup` killed while this process kept running.
        await recoverInterrupted(ctx.docker, new StateStore(ctx.config.stateDir), log);
        const m = await runBackup({
          docker: ctx.docker,
          config: ctx.config,
          backend: ctx.backend,
          log,
          kind: 'scheduled',
          signal,
        });
        metrics.recordSuccess(m);
        health.recordSuccess(new Date(m.completedAt), m.id);
        this.staleNotified = false;
        // Under the same lock: a prune never races a `docker exec … backup`.
        await this.pruneAfterSuccess();
        return m;
      });
    } catch (err) {
      if (isSidecarError(err, 'LOCKED')) {
        metrics.recordSkipped();
        log.warn({ step: 'schedule', code: err.code }, `scheduled backup skipped: ${describeError(err)}`);
        return;
      }
      if (signal.aborted) {
        log.warn({ step: 'schedule' }, 'scheduled backup interrupted by shutdown; the stack was resumed');
        return;
      }
      metrics.recordFailure(err);
      health.recordFailure(err);
      const code = isSidecarError(err) ? err.code : 'UNEXPECTED';
      log.error(
        { step: 'schedule', code, ...(isSidecarError(err) ? {} : { err }) },
        `scheduled backup failed: ${describeError(err)}`,
      );
      await notifier.failure(err);
      return;
    }
    await notifier.success(manifest);
  }

  /** A failed prune does not undo the backup: it is logged and retried after the next success. */
  private async pruneAfterSuccess(): Promise<void> {
    const { ctx, metrics } = this.opts;
    try {
      const r = await prune(ctx.backend, ctx.config.retention, { log: ctx.log });
      const deleted = new Set(r.deleted);
      metrics.setSnapshotCounts(r.entries.filter((e) => !deleted.has(e.id)));
    } catch (err) {
      ctx.log.error(
        { step: 'prune', code: isSidecarError(err) ? err.code : 'UNEXPECTED' },
        `prune after the backup failed: ${describeError(err)}`,
      );
    }
  }

  /** One 'stale' notification per stale period: re-armed once the state is no longer stale. */
  private async checkStale(): Promise<void> {
    if (this.checking) return;
    this.checking = true;
    try {
      const { health, notifier, ctx } = this.opts;
      if (health.report().status !== 'stale') {
        this.staleNotified = false;
        return;
      }
      // A `docker exec … backup` in another process may have succeeded meanwhile: ask the target (only
      // while apparently stale, so a healthy sidecar does not list the target every minute).
      await seedFromCatalog(this.opts);
      const report = health.report();
      if (report.status !== 'stale') {
        this.staleNotified = false;
        return;
      }
      if (this.staleNotified) return;
      this.staleNotified = true;
      ctx.log.warn({ step: 'health', staleAt: report.staleAt }, `backups are overdue: ${report.reason}`);
      await notifier.stale(report.reason ?? 'no recent successful backup');
    } finally {
      this.checking = false;
    }
  }
}

/**
 * Reads the last success and the snapshot counts from the target (at start, and before declaring staleness),
 * so /healthz and /metrics survive restarts. Best effort: an unreachable target is logged, the run reports it.
 */
export async function seedFromCatalog(
  opts: Pick<SchedulerOptions, 'ctx' | 'health' | 'metrics'>,
): Promise<void> {
  const { ctx, health, metrics } = opts;
  try {
    const entries = await listSnapshots(ctx.backend);
    metrics.setSnapshotCounts(entries);
    const newest = entries.find((e) => e.status === 'ok' && e.manifest?.kind !== 'pre-restore')?.manifest;
    if (!newest) return;
    const before = health.lastSuccessTime;
    health.recordSuccess(new Date(newest.completedAt), newest.id);
    if (health.lastSuccessTime !== before) metrics.setLastSuccess(newest);
  } catch (err) {
    ctx.log.warn(
      { step: 'health', code: isSidecarError(err) ? err.code : 'UNEXPECTED' },
      `cannot list snapshots: ${describeError(err)}`,
    );
  }
}

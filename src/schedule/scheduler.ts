import { Cron } from 'croner';
import type { SnapshotEntry } from '../archive/catalog.js';
import type { Manifest } from '../archive/manifest.js';
import { describeError, SidecarError } from '../common/errors.js';
import { CRON_HINT } from '../config/cron.js';
import type { Job } from '../config/jobs.js';
import type { Config } from '../config/types.js';
import { HealthState } from '../observe/health.js';
import type { JobsHealth } from '../observe/jobs-health.js';
import { type RunnerDeps, runJob, seedJob } from './runner.js';

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
      CRON_HINT,
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

export interface JobSchedulerOptions {
  deps: Omit<RunnerDeps, 'nameJobs' | 'onListed'>;
  health: JobsHealth;
  /** Check for staleness this often (bounded; default 60 s). */
  staleCheckMs?: number;
  /** Called after every run: a run reads the labels afresh, so `serve` re-plans its jobs from them too. */
  onRunDone?: (job: string) => void;
}

interface Entry {
  job: Job;
  cron: Cron | null;
  health: HealthState;
  /** The job's settings as JSON: a changed job gets a new cron. */
  key: string;
}

export interface JobChanges {
  added: string[];
  changed: string[];
  removed: string[];
}

/**
 * The jobs `serve` runs: one croner trigger per scheduled job, and one queue so that runs never overlap in
 * this process (a job due while another runs waits for it; a job due while itself is queued or running is
 * skipped). The run lock keeps them away from `docker exec` runs in other processes. The set of jobs can
 * change at any time (labels), keeping each job's health history.
 */
export class JobScheduler {
  private readonly entries = new Map<string, Entry>();
  private readonly listed = new Map<string, SnapshotEntry[]>();
  private readonly staleNotified = new Set<string>();
  private queue: string[] = [];
  private current: { name: string; done: Promise<void> } | null = null;
  private staleTimer: NodeJS.Timeout | null = null;
  private checking = false;
  private stopped = false;
  private newestSuccess = 0;
  private readonly deps: RunnerDeps;

  constructor(private readonly opts: JobSchedulerOptions) {
    this.deps = {
      ...opts.deps,
      nameJobs: () =>
        this.entries.size > 1 || [...this.entries.values()].some((e) => e.job.source !== 'implicit'),
      onListed: (job, entries) => {
        this.listed.set(job, entries);
        // Jobs sharing a target list the same leftovers: count each snapshot once.
        const all = new Map([...this.listed.values()].flat().map((e) => [e.id, e]));
        this.opts.deps.metrics.setSnapshotCounts([...all.values()]);
      },
    };
  }

  jobs(): Job[] {
    return [...this.entries.values()].map((e) => e.job);
  }

  /** Replaces the set of jobs; an unchanged job keeps its trigger, every job keeps its health history. */
  async setJobs(jobs: Job[]): Promise<JobChanges> {
    const changes: JobChanges = { added: [], changed: [], removed: [] };
    const wanted = new Map(jobs.map((j) => [j.name, j]));
    for (const [name, e] of this.entries) {
      if (wanted.has(name)) continue;
      e.cron?.stop();
      this.entries.delete(name);
      this.opts.health.delete(name);
      this.listed.delete(name);
      this.queue = this.queue.filter((q) => q !== name);
      changes.removed.push(name);
    }
    const fresh: Entry[] = [];
    for (const job of jobs) {
      const key = JSON.stringify(job);
      const old = this.entries.get(job.name);
      if (old?.key === key) continue;
      old?.cron?.stop();
      const entry: Entry = { job, key, cron: null, health: old?.health ?? this.newHealth(job.name) };
      if (job.config.schedule && !this.stopped) {
        entry.cron = new Cron(
          job.config.schedule,
          {
            catch: (err) =>
              this.deps.log.error(
                { step: 'schedule', job: job.name, err },
                `scheduler: ${describeError(err)}`,
              ),
          },
          () => this.trigger(job.name),
        );
      }
      this.entries.set(job.name, entry);
      this.opts.health.set(job.name, entry.health);
      (old ? changes.changed : changes.added).push(job.name);
      if (!old) fresh.push(entry);
    }
    await this.seed(fresh);
    return changes;
  }

  start(): void {
    const every = Math.min(Math.max(this.opts.staleCheckMs ?? DEFAULT_STALE_CHECK_MS, 1_000), 300_000);
    this.staleTimer = setInterval(() => void this.checkStale(), every);
  }

  nextRun(): Date | null {
    const times = [...this.entries.values()]
      .map((e) => e.cron?.nextRun() ?? null)
      .filter((d): d is Date => d !== null)
      .sort((a, b) => a.getTime() - b.getTime());
    return times[0] ?? null;
  }

  /** Stops triggering and waits for a running backup, which the abort signal stops (the stack is resumed). */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const e of this.entries.values()) e.cron?.stop();
    this.queue = [];
    if (this.staleTimer) clearInterval(this.staleTimer);
    await this.current?.done;
  }

  private newHealth(name: string): HealthState {
    return new HealthState({
      staleDeadline: (ref) => {
        const e = this.entries.get(name);
        return e ? (staleDeadline(e.job.config, e.cron ?? undefined)?.(ref) ?? null) : null;
      },
      nextRun: () => this.entries.get(name)?.cron?.nextRun() ?? null,
    });
  }

  private trigger(name: string): void {
    if (this.stopped) return;
    if (this.current?.name === name || this.queue.includes(name)) {
      this.deps.metrics.recordSkipped();
      this.deps.log.warn(
        { step: 'schedule', job: name },
        `previous scheduled backup${this.entries.size > 1 ? ` of job ${name}` : ''} still running: this trigger is skipped`,
      );
      return;
    }
    this.queue.push(name);
    void this.pump();
  }

  private async pump(): Promise<void> {
    if (this.current) return;
    for (let name = this.queue.shift(); name !== undefined && !this.stopped; name = this.queue.shift()) {
      const entry = this.entries.get(name);
      if (!entry) continue;
      const done = runJob(this.deps, entry.job, entry.health).then(() => {
        if (entry.health.lastSuccessTime) this.staleNotified.delete(name);
      });
      this.current = { name, done };
      await done;
      this.current = null;
      if (!this.stopped) this.opts.onRunDone?.(name);
    }
  }

  private async seed(entries: Entry[]): Promise<void> {
    for (const e of entries) this.noteSuccess(await seedJob(this.deps, e.job, e.health));
  }

  /** The gauges show the newest success of any job. */
  private noteSuccess(m: Manifest | undefined): void {
    if (!m || Date.parse(m.completedAt) <= this.newestSuccess) return;
    this.newestSuccess = Date.parse(m.completedAt);
    this.deps.metrics.setLastSuccess(m);
  }

  /** One 'stale' notification per job and stale period: re-armed once the job is no longer stale. */
  private async checkStale(): Promise<void> {
    if (this.checking) return;
    this.checking = true;
    try {
      for (const [name, e] of this.entries) {
        if (e.health.report().status !== 'stale') {
          this.staleNotified.delete(name);
          continue;
        }
        // A `docker exec … backup` in another process may have succeeded meanwhile: ask the target (only
        // while apparently stale, so a healthy sidecar does not list the target every minute).
        this.noteSuccess(await seedJob(this.deps, e.job, e.health));
        const report = e.health.report();
        if (report.status !== 'stale') {
          this.staleNotified.delete(name);
          continue;
        }
        if (this.staleNotified.has(name)) continue;
        this.staleNotified.add(name);
        this.deps.log.warn(
          { step: 'health', job: name, staleAt: report.staleAt },
          `backups are overdue: ${report.reason}`,
        );
        await this.opts.deps.notifier.stale(
          report.reason ?? 'no recent successful backup',
          this.deps.nameJobs() ? name : undefined,
        );
      }
    } finally {
      this.checking = false;
    }
  }
}

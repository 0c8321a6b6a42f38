import type Docker from 'dockerode';
import { entriesOfJob, listSnapshots, type SnapshotEntry } from '../archive/catalog.js';
import type { Manifest } from '../archive/manifest.js';
import { runBackup } from '../backup/run.js';
import { describeError, isSidecarError } from '../common/errors.js';
import type { Job } from '../config/jobs.js';
import type { Config, Target } from '../config/types.js';
import type { HealthState } from '../observe/health.js';
import type { Logger } from '../observe/logger.js';
import type { BackupMetrics } from '../observe/metrics.js';
import type { Notifier } from '../observe/notify.js';
import { prune } from '../prune/run.js';
import { discardInterrupted } from '../recover/discard-interrupted.js';
import { recoverInterrupted } from '../recover/run.js';
import { type RunState, StateStore } from '../stack/state.js';
import type { Backend } from '../storage/backend.js';
import { createBackend } from '../storage/index.js';
import { withRunLock } from './lock.js';

/** One backend per distinct target, shared by the jobs that write there (one S3 client each). */
export class BackendPool {
  private readonly backends = new Map<string, Backend & { close?: () => void }>();

  constructor(private readonly log: Logger) {}

  get(target: Target): Backend {
    const key = JSON.stringify(target);
    let b = this.backends.get(key);
    if (!b) {
      b = createBackend(target, {
        log: (msg: string, fields?: Record<string, unknown>) =>
          this.log.warn({ step: 'storage', ...fields }, msg),
      }) as Backend & { close?: () => void };
      this.backends.set(key, b);
    }
    return b;
  }

  close(): void {
    for (const b of this.backends.values()) b.close?.();
    this.backends.clear();
  }
}

export interface RunnerDeps {
  docker: Docker;
  log: Logger;
  /** Aborted on SIGTERM: a running backup stops and resumes the stack. */
  signal: AbortSignal;
  /** The state dir holding the one run lock (process-wide, never per job). */
  stateDir: string;
  metrics: BackupMetrics;
  notifier: Notifier;
  backends: BackendPool;
  /** Every configured job's settings: a killed run's leftovers may be at any of their targets. */
  configs: Config[];
  /** Several jobs: name the job in notifications. */
  nameJobs: () => boolean;
  /** A job's snapshots as listed after its prune (the snapshot-count gauge sums every job's). */
  onListed: (job: string, entries: SnapshotEntry[]) => void;
}

/**
 * One scheduled run of a job: under the run lock shared with `docker exec … backup` and every other job,
 * back up, record health and metrics, prune this job's snapshots by its retention, notify.
 */
export async function runJob(deps: RunnerDeps, job: Job, health: HealthState): Promise<void> {
  const { log, signal, metrics, notifier } = deps;
  if (signal.aborted) return;
  const backend = deps.backends.get(job.config.target);
  const named = deps.nameJobs() ? job.name : undefined;
  let manifest: Manifest;
  try {
    manifest = await withRunLock({ config: { stateDir: deps.stateDir } }, 'backup', async () => {
      // Also covers a `docker exec … backup` killed while this process kept running.
      await recoverLeftovers(deps);
      const m = await runBackup({
        docker: deps.docker,
        config: job.config,
        backend,
        log,
        kind: 'scheduled',
        signal,
        job: job.name,
      });
      // Under the same lock: a prune never races a `docker exec … backup`.
      await pruneJob(deps, job, backend);
      // Recorded once the prune has listed the target: /healthz says ok only when /metrics counts the snapshot.
      metrics.recordSuccess(m);
      health.recordSuccess(new Date(m.completedAt), m.id);
      return m;
    });
  } catch (err) {
    if (isSidecarError(err, 'LOCKED')) {
      metrics.recordSkipped();
      log.warn(
        { step: 'schedule', job: job.name, code: err.code },
        `scheduled backup skipped: ${describeError(err)}`,
      );
      return;
    }
    if (signal.aborted) {
      log.warn(
        { step: 'schedule', job: job.name },
        'scheduled backup interrupted by shutdown; the stack was resumed',
      );
      return;
    }
    metrics.recordFailure(err, job.name);
    health.recordFailure(err);
    const code = isSidecarError(err) ? err.code : 'UNEXPECTED';
    log.error(
      { step: 'schedule', job: job.name, code, ...(isSidecarError(err) ? {} : { err }) },
      `scheduled backup${named ? ` of job ${named}` : ''} failed: ${describeError(err)}`,
    );
    await notifier.failure(err, undefined, named);
    return;
  }
  await notifier.success(manifest, named);
}

/**
 * Under the run lock: resume what a dead run left stopped and discard its partial snapshot and open uploads.
 * Returns the dead run's state, null when there was none.
 */
export async function recoverLeftovers(
  deps: Pick<RunnerDeps, 'docker' | 'log' | 'stateDir' | 'configs'>,
): Promise<RunState | null> {
  const interrupted = await recoverInterrupted(deps.docker, new StateStore(deps.stateDir), deps.log);
  await discardInterrupted(deps.configs, interrupted, deps.log);
  return interrupted;
}

/** A failed prune does not undo the backup: it is logged and retried after the next success. */
async function pruneJob(deps: RunnerDeps, job: Job, backend: Backend): Promise<void> {
  try {
    // The store's sweep runs here too, still under the backup's lock: no backup is writing packs meanwhile.
    const r = await prune(backend, job.config.retention, { log: deps.log, job: job.name, store: job.config });
    const deleted = new Set(r.deleted);
    deps.onListed(
      job.name,
      r.entries.filter((e) => !deleted.has(e.id)),
    );
  } catch (err) {
    deps.log.error(
      { step: 'prune', job: job.name, code: isSidecarError(err) ? err.code : 'UNEXPECTED' },
      `prune after the backup failed: ${describeError(err)}`,
    );
  }
}

/**
 * Reads a job's last success and snapshot count from its target (at start, and before declaring staleness),
 * so /healthz and /metrics survive restarts. Returns the job's newest good snapshot. Best effort: an
 * unreachable target is logged, the run reports it.
 */
export async function seedJob(
  deps: Pick<RunnerDeps, 'backends' | 'log' | 'onListed'>,
  job: Job,
  health: HealthState,
): Promise<Manifest | undefined> {
  try {
    const entries = entriesOfJob(await listSnapshots(deps.backends.get(job.config.target)), job.name);
    deps.onListed(job.name, entries);
    const newest = entries.find((e) => e.status === 'ok' && e.manifest?.kind !== 'pre-restore')?.manifest;
    if (newest) health.recordSuccess(new Date(newest.completedAt), newest.id);
    return newest;
  } catch (err) {
    deps.log.warn(
      { step: 'health', job: job.name, code: isSidecarError(err) ? err.code : 'UNEXPECTED' },
      `cannot list snapshots: ${describeError(err)}`,
    );
    return undefined;
  }
}

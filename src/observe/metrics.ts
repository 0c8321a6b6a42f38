import { Counter, Gauge, Registry } from 'prom-client';
import { jobOf, type SnapshotEntry } from '../archive/catalog.js';
import type { Manifest } from '../archive/manifest.js';

export type RunResult = 'success' | 'failure' | 'skipped';

/**
 * The sidecar's Prometheus metrics, on a registry of its own: prom-client's global registry stays untouched,
 * so several instances (tests) never clash and no process metrics are exported unasked.
 */
export class BackupMetrics {
  readonly registry = new Registry();
  private readonly lastSuccess: Gauge;
  private readonly lastDuration: Gauge;
  private readonly lastDowntime: Gauge;
  private readonly volumeRaw: Gauge<'volume'>;
  private readonly volumeStored: Gauge<'volume'>;
  private readonly failures: Counter;
  private readonly runs: Counter<'result'>;
  private readonly snapshots: Gauge<'status'>;
  private readonly jobLastSuccess: Gauge<'backup_job'>;
  private readonly jobFailures: Counter<'backup_job'>;
  private readonly lastMaintenance: Gauge;
  private readonly lastMoodleExcludes: Gauge;
  private readonly blobFiles: Gauge;
  private readonly blobAddedBytes: Gauge;
  private readonly blobMismatches: Gauge;

  constructor() {
    const registers = [this.registry];
    this.lastSuccess = new Gauge({
      name: 'moodle_backup_last_success_timestamp_seconds',
      help: 'Unix time the last successful backup completed (0: none yet)',
      registers,
    });
    this.lastDuration = new Gauge({
      name: 'moodle_backup_last_duration_seconds',
      help: 'Total duration of the last successful backup',
      registers,
    });
    this.lastDowntime = new Gauge({
      name: 'moodle_backup_last_downtime_seconds',
      help: 'How long the stack was stopped or paused during the last successful backup',
      registers,
    });
    this.volumeRaw = new Gauge({
      name: 'moodle_backup_volume_raw_bytes',
      help: 'Uncompressed tar size per volume in the last successful backup',
      labelNames: ['volume'],
      registers,
    });
    this.volumeStored = new Gauge({
      name: 'moodle_backup_volume_stored_bytes',
      help: 'Stored (compressed) size per volume in the last successful backup',
      labelNames: ['volume'],
      registers,
    });
    this.failures = new Counter({
      name: 'moodle_backup_failures_total',
      help: 'Backup runs that failed since the sidecar started',
      registers,
    });
    this.runs = new Counter({
      name: 'moodle_backup_runs_total',
      help: 'Backup runs since the sidecar started, by result (skipped: another run held the lock)',
      labelNames: ['result'],
      registers,
    });
    this.snapshots = new Gauge({
      name: 'moodle_backup_snapshots',
      help: 'Snapshots at the target by status, as last listed',
      labelNames: ['status'],
      registers,
    });
    // Per job (YAML `jobs:`, schedule labels): the unlabelled series above describe the last run of any job.
    // Labelled backup_job, not job: Prometheus sets `job` on every scraped series itself.
    this.jobLastSuccess = new Gauge({
      name: 'moodle_backup_job_last_success_timestamp_seconds',
      help: 'Unix time the last successful backup of each job completed',
      labelNames: ['backup_job'],
      registers,
    });
    this.jobFailures = new Counter({
      name: 'moodle_backup_job_failures_total',
      help: 'Backup runs of each job that failed since the sidecar started',
      labelNames: ['backup_job'],
      registers,
    });
    // 0 says a snapshot was taken without Moodle's protection (Moodle not found, or not asked): alert on it.
    this.lastMaintenance = new Gauge({
      name: 'moodle_backup_last_maintenance_mode',
      help: 'The last successful backup ran with Moodle in maintenance mode (1) or without (0)',
      registers,
    });
    this.lastMoodleExcludes = new Gauge({
      name: 'moodle_backup_last_moodle_excludes',
      help: "The last successful backup applied Moodle's dataroot excludes (1) or not (0)",
      registers,
    });
    this.blobFiles = new Gauge({
      name: 'moodle_backup_last_blob_files',
      help: 'Moodle files (filedir/, trashdir/) per volume in the last successful backup, kept in the blob store',
      labelNames: ['volume'],
      registers,
    });
    this.blobAddedBytes = new Gauge({
      name: 'moodle_backup_last_blob_added_bytes',
      help: 'Bytes of Moodle files new to the blob store, per volume, in the last successful backup',
      labelNames: ['volume'],
      registers,
    });
    // Above 0: files whose content is not their name, i.e. corruption on the live site. Alert on it.
    this.blobMismatches = new Gauge({
      name: 'moodle_backup_last_corrupt_files',
      help: 'Moodle files whose content did not match their SHA-1 name in the last successful backup',
      registers,
    });
    // Series exist from the start, so rate() and absent-checks work before the first run.
    this.lastSuccess.set(0);
    for (const result of ['success', 'failure', 'skipped'] as const) this.runs.inc({ result }, 0);
    for (const status of ['ok', 'incomplete', 'damaged'] as const) this.snapshots.set({ status }, 0);
  }

  recordSuccess(manifest: Manifest): void {
    this.runs.inc({ result: 'success' });
    this.setLastSuccess(manifest);
  }

  /** The last success without counting a run: seeds the gauges from the catalog when `serve` starts. */
  setLastSuccess(manifest: Manifest): void {
    this.lastSuccess.set(Date.parse(manifest.completedAt) / 1000);
    this.jobLastSuccess.set({ backup_job: jobOf(manifest) }, Date.parse(manifest.completedAt) / 1000);
    this.lastDuration.set(manifest.timings.totalMs / 1000);
    this.lastDowntime.set(manifest.timings.downtimeMs / 1000);
    // Snapshots from before the field existed say nothing either way.
    this.lastMaintenance.reset();
    this.lastMoodleExcludes.reset();
    if (manifest.site) {
      this.lastMaintenance.set(manifest.site.maintenance ? 1 : 0);
      this.lastMoodleExcludes.set(manifest.site.moodleExcludes ? 1 : 0);
    }
    // Reset first: a volume dropped from the stack must not keep reporting its old size.
    this.volumeRaw.reset();
    this.volumeStored.reset();
    this.blobFiles.reset();
    this.blobAddedBytes.reset();
    this.blobMismatches.set(manifest.volumes.reduce((n, v) => n + (v.blobs?.mismatches.length ?? 0), 0));
    for (const v of manifest.volumes) {
      if (!v.blobs) continue;
      this.blobFiles.set({ volume: v.name }, v.blobs.count);
      this.blobAddedBytes.set({ volume: v.name }, v.blobs.addedBytes);
    }
    for (const v of manifest.volumes) {
      this.volumeRaw.set({ volume: v.name }, v.rawBytes);
      this.volumeStored.set({ volume: v.name }, v.storedBytes);
    }
    // An online snapshot's dump stands for its datadir volume.
    const db = manifest.database;
    if (db) {
      this.volumeRaw.set({ volume: db.volume.name }, db.rawBytes);
      this.volumeStored.set({ volume: db.volume.name }, db.storedBytes);
    }
  }

  recordFailure(_err?: unknown, job?: string): void {
    this.runs.inc({ result: 'failure' });
    this.failures.inc();
    if (job !== undefined) this.jobFailures.inc({ backup_job: job });
  }

  recordSkipped(): void {
    this.runs.inc({ result: 'skipped' });
  }

  setSnapshotCounts(entries: SnapshotEntry[]): void {
    const counts = { ok: 0, incomplete: 0, damaged: 0 };
    for (const e of entries) counts[e.status]++;
    for (const [status, n] of Object.entries(counts)) this.snapshots.set({ status }, n);
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }
}

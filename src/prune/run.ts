import { entriesOfJob, listSnapshots, type SnapshotEntry } from '../archive/catalog.js';
import { MANIFEST_NAME } from '../archive/manifest.js';
import { SidecarError } from '../common/errors.js';
import type { RetentionPolicy } from '../config/types.js';
import type { Logger } from '../observe/logger.js';
import { type Decision, planRetention, type SnapshotRef } from '../retention/policy.js';
import type { Backend } from '../storage/backend.js';
import { type StoreSweepConfig, type StoreSweepResult, sweepStore } from './sweep.js';

export interface PruneOptions {
  now?: Date;
  /** Plan only: nothing is deleted. */
  dryRun?: boolean;
  log: Logger;
  /** Apply the policy to this job's snapshots only (a target may hold several jobs'); undefined: all. */
  job?: string;
  /** Keys, codec and scratch space for the blob store's sweep (default: zstd, no keys, the OS temp dir). */
  store?: StoreSweepConfig;
  signal?: AbortSignal;
}

export interface PruneResult {
  decisions: Decision[];
  /** Every snapshot as listed before pruning (for metrics and reports). */
  entries: SnapshotEntry[];
  /** Ids whose objects were all deleted (empty on a dry run). */
  deleted: string[];
  deletedBytes: number;
  /** The blob store's mark and sweep (on a dry run: what it would do); undefined when there is no store. */
  store?: StoreSweepResult;
}

/**
 * What the planner needs from a catalog entry. A damaged manifest still marks a finished run (complete, not
 * ok); an incomplete entry is dated by its last write, so a slow upload of an old run is not swept mid-way.
 */
export function toSnapshotRef(e: SnapshotEntry): SnapshotRef {
  if (e.status === 'incomplete') {
    return { id: e.id, time: e.modified, kind: 'scheduled', complete: false, ok: false };
  }
  return {
    id: e.id,
    time: e.time,
    kind: e.manifest?.kind ?? 'scheduled',
    complete: true,
    ok: e.status === 'ok',
  };
}

/**
 * Applies the retention policy to the target: lists, plans (retention/policy.ts), deletes every object of
 * each forgotten snapshot, then sweeps the blob store of what no remaining snapshot needs (sweep.ts). Deletion stops at the first error, which is thrown after the snapshots deleted so
 * far are logged; a rerun finishes the job because a half-deleted snapshot is simply an incomplete one.
 */
export async function prune(
  backend: Backend,
  policy: RetentionPolicy,
  opts: PruneOptions,
): Promise<PruneResult> {
  const { log } = opts;
  const now = opts.now ?? new Date();
  const listed = await listSnapshots(backend);
  const entries = entriesOfJob(listed, opts.job);
  const decisions = planRetention(entries.map(toSnapshotRef), policy, now);
  const forgotten = decisions.filter((d) => !d.keep);
  const result: PruneResult = { decisions, entries, deleted: [], deletedBytes: 0 };
  log.info(
    {
      step: 'prune',
      target: backend.location,
      ...(opts.job !== undefined ? { job: opts.job } : {}),
      kept: decisions.length - forgotten.length,
      forgotten: forgotten.map((d) => d.id),
      dryRun: opts.dryRun === true,
    },
    `retention: ${decisions.length - forgotten.length} kept, ${forgotten.length} to forget${opts.dryRun ? ' (dry run)' : ''}`,
  );
  const sweep = (gone: string[]) =>
    sweepStore(backend, listed, {
      gone: new Set(gone),
      cfg: opts.store,
      dryRun: opts.dryRun === true,
      now,
      graceMs: policy.sweepGraceHours * 3_600_000,
      log,
      signal: opts.signal,
    });
  if (opts.dryRun) {
    result.store = await sweep(forgotten.map((d) => d.id));
    return result;
  }

  const byId = new Map(entries.map((e) => [e.id, e]));
  for (const d of forgotten) {
    const entry = byId.get(d.id);
    if (!entry) continue;
    try {
      await deleteSnapshot(backend, entry);
    } catch (err) {
      const cause = err instanceof Error ? err.message : String(err);
      throw new SidecarError(
        'STORAGE_FAILED',
        `prune: deleting snapshot ${d.id} at ${backend.location} failed after ${result.deleted.length} deleted: ${cause}`,
        'run `prune` again; a partly deleted snapshot has no manifest and is swept',
        { cause: err },
      );
    }
    result.deleted.push(d.id);
    result.deletedBytes += entry.storedBytes;
    log.info({ step: 'prune', snapshot: d.id, reason: d.reasons[0] }, `forgot snapshot ${d.id}`);
  }
  // Every snapshot of every job that stays protects its blobs; the rest of the store goes.
  result.store = await sweep(result.deleted);
  return result;
}

/** Manifest first: from that moment the snapshot is listed as incomplete, never as a complete one with holes. */
async function deleteSnapshot(backend: Backend, entry: SnapshotEntry): Promise<void> {
  const manifestKey = `${entry.id}/${MANIFEST_NAME}`;
  const keys = entry.objects.map((o) => o.key);
  if (keys.includes(manifestKey)) await backend.delete(manifestKey);
  for (const key of keys) if (key !== manifestKey) await backend.delete(key);
}

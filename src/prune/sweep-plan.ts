import type { Backend } from '../storage/backend.js';
import type { BlobIndex } from '../store/blob-index.js';
import type { StoreEncoding } from '../store/encoding.js';
import type { HashSet20 } from '../store/hash-set.js';
import { type PackRecord, recordsOf } from '../store/index-file.js';
import { INDEX_PREFIX, idOfKey } from '../store/layout.js';
import { blobProblem, storedPacks } from '../store/snapshot-blobs.js';
import { readIndexFile } from '../store/store-io.js';
import { planSweep, type RepackCandidate } from '../store/sweep.js';

/** Repacking downloads and rewrites packs: at most this many a run (~4 GiB at 16 MiB), the rest next time. */
export const REPACK_MAX = 256;

export interface StoreSweepPlan {
  /** Every index file and the packs it names. */
  indexFiles: Map<string, string[]>;
  /** Packs no kept snapshot needs. */
  dead: { id: string; storedSize: number }[];
  /** Packs mostly dead: their live blobs go to new packs first. */
  repack: (RepackCandidate & { pack: PackRecord })[];
  /** Stored packs that no index file names (an interrupted backup or repack), older than the grace period. */
  orphans: { id: string; size: number }[];
  /** Such packs still within the grace period (a run of another process may be about to index them). */
  youngOrphans: number;
  /** Repack candidates left for the next run (over REPACK_MAX). */
  repackDeferred: number;
}

/** Why the sweep must not delete anything, or the plan. */
export type PlanOutcome = { ok: true; plan: StoreSweepPlan } | { ok: false; reason: string };

/**
 * The sweep's plan from the loaded index, the packs stored and the mark. First the closure: every live blob
 * must be indexed in a stored pack of the recorded size, else something is already wrong (a lost index
 * file would make its packs look like garbage) and nothing is planned. Then each index file is read again,
 * one at a time, and planSweep (store/sweep.ts) judges its packs one by one, so only one pack's blob names
 * are ever strings at once.
 */
export async function planStoreSweep(
  backend: Backend,
  encoding: StoreEncoding,
  index: BlobIndex,
  live: HashSet20,
  o: { now: Date; graceMs: number; repackBelow?: number },
): Promise<PlanOutcome> {
  const stored = await storedPacks(backend);
  const problems: string[] = [];
  for (const h of live.hashes()) {
    const p = blobProblem(h, index, stored);
    if (p) problems.push(p);
    if (problems.length >= 3) break;
  }
  if (problems.length > 0) {
    return { ok: false, reason: `kept snapshots need blobs the store cannot give: ${problems.join('; ')}` };
  }
  const plan: StoreSweepPlan = {
    indexFiles: new Map(),
    dead: [],
    repack: [],
    orphans: [],
    youngOrphans: 0,
    repackDeferred: 0,
  };
  const judged = new Set<string>();
  const holder = (sha1: string) => index.lookup(Buffer.from(sha1, 'hex'))?.packId;
  const isLive = (sha1: string) => live.hasHex(sha1);
  const ids = (await backend.list(INDEX_PREFIX)).flatMap((obj) => idOfKey(obj.key) ?? []);
  for (const indexId of ids) {
    const packs = await readIndexFile(backend, encoding, indexId);
    plan.indexFiles.set(
      indexId,
      packs.map((p) => p.pack.id),
    );
    for (const { pack, records } of packs) {
      if (judged.has(pack.id)) continue;
      judged.add(pack.id);
      const blobs = [...recordsOf(records)].map((b) => ({
        sha1: Buffer.from(b.sha1).toString('hex'),
        size: b.size,
      }));
      const one = planSweep([{ id: pack.id, storedSize: pack.storedSize, blobs }], isLive, holder, {
        repackBelow: o.repackBelow,
      });
      if (one.dead.length > 0) plan.dead.push({ id: pack.id, storedSize: pack.storedSize });
      for (const r of one.repack) {
        if (plan.repack.length < REPACK_MAX) plan.repack.push({ ...r, pack });
        else plan.repackDeferred++;
      }
    }
  }
  for (const [id, s] of stored) {
    if (judged.has(id)) continue;
    if (o.now.getTime() - s.modified.getTime() >= o.graceMs) plan.orphans.push({ id, size: s.size });
    else plan.youngOrphans++;
  }
  return { ok: true, plan };
}

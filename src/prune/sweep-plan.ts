import type { Backend } from '../storage/backend.js';
import { type Locatable, locateBlobs, locateProblems } from '../store/blob-locate.js';
import type { StoreEncoding } from '../store/encoding.js';
import { HASH_BYTES } from '../store/entry-table.js';
import type { HashSet20 } from '../store/hash-set.js';
import { BLOB_RECORD_BYTES, type PackRecord, readU64 } from '../store/index-file.js';
import { storedPacks } from '../store/snapshot-blobs.js';
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
 * The sweep's plan from the packs stored and the mark. First every index file is read once and each live
 * blob located (a pack number beside each marked hash: 4 bytes a blob, not the store's whole index of 36):
 * every live blob must be indexed in a stored pack of the recorded size, else something is already wrong (a
 * lost index file would make its packs look like garbage) and nothing is planned. Then each index file is
 * read again, one at a time, and planSweep (store/sweep.ts) judges its packs one by one, naming blobs by
 * their records' offsets: only a repacked pack's live blobs become strings.
 */
export async function planStoreSweep(
  backend: Backend,
  encoding: StoreEncoding,
  live: HashSet20,
  o: { now: Date; graceMs: number; repackBelow?: number },
): Promise<PlanOutcome> {
  const stored = await storedPacks(backend);
  const holders = new Int32Array(live.length).fill(-1);
  const marked: Locatable = {
    find: (src, at, each) => {
      const i = live.position(src, at);
      if (i >= 0) each(i);
    },
    packOf: (i) => holders[i] ?? -1,
    setPack: (i, p) => {
      holders[i] = p;
    },
  };
  const { packs, indexFiles } = await locateBlobs(backend, encoding, [marked], stored);
  const hex = (i: number) => Buffer.from(live.hashAt(i)).toString('hex');
  const problems = locateProblems(live.length, { packOf: marked.packOf, hex }, packs, stored, 3);
  if (problems.length > 0) {
    return { ok: false, reason: `kept snapshots need blobs the store cannot give: ${problems.join('; ')}` };
  }
  const plan: StoreSweepPlan = {
    indexFiles,
    dead: [],
    repack: [],
    orphans: [],
    youngOrphans: 0,
    repackDeferred: 0,
  };
  const judged = new Set<string>();
  const scratch = { buf: Buffer.alloc(0) };
  for (const indexId of indexFiles.keys()) {
    const decoded = await readIndexFile(backend, encoding, indexId, scratch);
    for (const { pack, records } of decoded) {
      if (judged.has(pack.id)) continue;
      judged.add(pack.id);
      // A blob is named by its record's offset: live when marked and located in this very pack.
      const holder = (at: number) => {
        const i = live.position(records, at);
        return i < 0 ? undefined : packs[holders[i] ?? -1]?.id;
      };
      function* blobs() {
        for (let at = 0; at + BLOB_RECORD_BYTES <= records.length; at += BLOB_RECORD_BYTES)
          yield { sha1: at, size: readU64(records, at + HASH_BYTES + 8) };
      }
      const one = planSweep(
        [{ id: pack.id, storedSize: pack.storedSize, blobs: blobs() }],
        (at) => holder(at) !== undefined,
        holder,
        { repackBelow: o.repackBelow },
      );
      if (one.dead.length > 0) plan.dead.push({ id: pack.id, storedSize: pack.storedSize });
      for (const r of one.repack) {
        const names = r.live.map((at) => records.toString('hex', at, at + HASH_BYTES));
        if (plan.repack.length < REPACK_MAX) plan.repack.push({ ...r, live: names, pack });
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

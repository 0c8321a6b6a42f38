import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { sinceMarginFor } from '../backup/blob-window.js';
import { isUndecodable } from '../common/undecodable.js';
import type { BlobSet } from '../store/blob-set.js';
import { BLOB_AREAS, type BlobArea } from '../store/layout.js';
import { LeafSet, type LeafTable, leafOf, leafSlot, SLOTS } from '../store/leaf-table.js';
import { listBlobs, scanLeaves } from '../store/listing.js';
import type { LeafSwap } from '../volume/leaf-swap.js';
import type { LiveLinks } from './link-live.js';

/**
 * Leaf directories swapped one by one at most (each is two renames with the stack stopped); beyond that the
 * blob areas move whole, their kept files linked into the staging copy before the stop.
 */
export const LEAF_SWAPS_MAX = 8192;

/** The live leaf directories when a staged restore began to look at them. */
export interface LeafStamps {
  /** The blob areas both the live dataroot and the staging copy (its tarball) have as directories. */
  areas: BlobArea[];
  /** Each live leaf directory's ctime, owner, mode and time. */
  stamps: LeafTable;
  /** A directory whose ctime is at or after this changed after the look (or may have: the racy margin). */
  sinceMs: number;
  /** A live name in the areas, one or two levels down, that is not UTF-8: swapped by name, it is not found. */
  undecodable: boolean;
}

/** Which of the snapshot's leaf directories the live dataroot holds exactly as the snapshot does. */
export interface LeafPlan extends LeafStamps {
  /** 1 at each kept leaf directory's slot: left in place, neither linked nor fetched. */
  keep: Uint8Array;
  kept: number;
  /** The snapshot's leaf directories with their attributes: the blob list's, or the tarball's (format 1). */
  leaves: LeafTable;
  /** The tarball made the leaf directories (no directory lines): the kept ones' copies are to go from STAGING. */
  fromTarball: boolean;
}

/**
 * The live leaf directories' ctimes and attributes, taken before their files are listed: a change after this
 * moves a directory's ctime, which the window compares (leavesToSwap). Null when no area is on both sides.
 */
export async function leafStamps(live: string, staging: string): Promise<LeafStamps | null> {
  const areas: BlobArea[] = [];
  for (const a of BLOB_AREAS)
    if ((await isDir(join(live, a))) && (await isDir(join(staging, a)))) areas.push(a);
  if (areas.length === 0) return null;
  const sinceMs = Date.now() - (await sinceMarginFor(live));
  const { stamps, undecodable } = await scanLeaves(live, { attrs: true, areas });
  return {
    areas,
    stamps,
    sinceMs,
    undecodable: undecodable !== undefined || (await firstLevelUndecodable(live, areas)),
  };
}

/**
 * Keeps a snapshot leaf directory where it is when the live one holds exactly its files (each at its path
 * with its size, owner, mode and time, nothing else) and has its owner, mode and time, and the tarball
 * brought nothing into it (other files than blobs). The leaf directories are the blob list's, or, when it
 * names none (a snapshot whose window listed every file, before 2026-12-07: online mode, a blob-shaped link,
 * a leaf directory not in UTF-8), the ones the tarball made. Null when more than LEAF_SWAPS_MAX leaf
 * directories would be swapped.
 */
export async function planLeaves(
  base: LeafStamps,
  set: BlobSet,
  listed: LeafTable,
  live: LiveLinks,
  staging: string,
): Promise<LeafPlan | null> {
  // The leaf swap moves entries by name: with a name that is not UTF-8 on either side, the areas move whole.
  if (base.undecodable || (await firstLevelUndecodable(staging, base.areas))) return null;
  const fromTarball = listed.size === 0;
  const staged = await scanLeaves(staging, { attrs: fromTarball, areas: base.areas });
  if (staged.undecodable !== undefined) return null;
  const leaves = fromTarball ? staged.stamps : listed;
  // What the tarball put in each leaf directory (with directory lines it made only those that hold some).
  const inTarball = new Uint32Array(SLOTS);
  if (fromTarball)
    for await (const l of listBlobs(staging, base.areas, { allNames: true })) {
      const s = leafSlot(leafOf(l.path));
      if (s >= 0) inTarball[s] = (inTarball[s] as number) + 1;
    }
  else
    for (const [path] of staged.stamps) {
      const s = leafSlot(path);
      if (s >= 0) inTarball[s] = 1; // an odd name is never kept anyway
    }
  const count = new Uint32Array(SLOTS);
  for (let n = 0; n < set.length; n++) {
    const s = set.leafSlot(n);
    if (s >= 0) count[s] = (count[s] as number) + 1;
  }
  const inArea = (s: number) => base.areas.includes(BLOB_AREAS[s >>> 16] as BlobArea);
  const keep = new Uint8Array(SLOTS);
  let kept = 0;
  let built = 0;
  for (const e of leaves.each()) {
    const s = leafSlot(e.path);
    if (s < 0 ? !base.areas.some((a) => e.path.startsWith(`${a}/`)) : !inArea(s)) continue;
    const same =
      s >= 0 &&
      inTarball[s] === 0 &&
      leaves.sameAttrsAt(s, base.stamps, fromTarball) &&
      live.perLeaf.all[s] === count[s] &&
      live.perLeaf.same[s] === count[s];
    if (!same) built++;
    else {
      keep[s] = 1;
      kept++;
    }
  }
  if (built + (base.stamps.size - kept) > LEAF_SWAPS_MAX) return null;
  return { ...base, keep, kept, leaves, fromTarball };
}

/**
 * With the stack stopped, right before the swap: the kept leaf directories that changed since the look before
 * the stop (Moodle added or removed a file meanwhile) are built in the staging copy after all (`rebuild`), and
 * what leaves the live areas is named: every entry there but the kept leaf directories.
 */
export async function leavesToSwap(
  plan: LeafPlan,
  live: string,
  staging: string,
  rebuild: (leaves: LeafSet) => Promise<void>,
): Promise<LeafSwap & { rebuilt: number }> {
  const { stamps } = await scanLeaves(live, { areas: plan.areas });
  const { stale } = stamps.changedSince(plan.stamps, plan.sinceMs);
  const redo = new LeafSet();
  for (const l of stale) {
    const s = leafSlot(l);
    if (s < 0 || !plan.keep[s]) continue;
    plan.keep[s] = 0;
    plan.kept--;
    redo.add(l);
  }
  if (redo.size > 0) await rebuild(redo);
  return { areas: plan.areas, out: await leavingEntries(plan, live, staging), rebuilt: redo.size };
}

/**
 * Every entry of the live areas at depth one and two but the kept leaf directories; an entry at depth one
 * that the staging copy has no directory for (a level the snapshot lacks, a stray file) goes whole.
 */
async function leavingEntries(plan: LeafPlan, live: string, staging: string): Promise<string[]> {
  const out: string[] = [];
  for (const area of plan.areas) {
    for (const e of await readdir(join(live, area), { withFileTypes: true })) {
      const level = `${area}/${e.name}`;
      if (!e.isDirectory() || !(await isDir(join(staging, level)))) {
        out.push(level);
        continue;
      }
      for (const c of await readdir(join(live, level), { withFileTypes: true })) {
        const leaf = `${level}/${c.name}`;
        const s = c.isDirectory() ? leafSlot(leaf) : -1;
        if (s < 0 || !plan.keep[s]) out.push(leaf);
      }
    }
  }
  return out;
}

/** Whether an area holds, one level down, a name that is not UTF-8. */
async function firstLevelUndecodable(root: string, areas: readonly BlobArea[]): Promise<boolean> {
  for (const a of areas) if ((await readdir(join(root, a))).some(isUndecodable)) return true;
  return false;
}

async function isDir(p: string): Promise<boolean> {
  return (await lstat(p).catch(() => null))?.isDirectory() ?? false;
}

import { lstat, mkdir, readdir, rename, rmdir, stat, statfs, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import type { TarStats } from '../archive/tar-guard.js';
import { SidecarError } from '../common/errors.js';
import { secondsTime } from '../common/file-time.js';
import { isUndecodable } from '../common/undecodable.js';
import { findDelete, finishDir } from './dir-untar.js';
import { type LeafSwap, leavesBack, leavesIn, leavesOut } from './leaf-swap.js';

/**
 * The `mount` write path's staged restore: the archive is unpacked into STAGING inside the volume (same file
 * system, so the swap is a handful of renames), the old top-level entries are moved into OLD, the new ones out
 * of STAGING, and OLD is deleted — for a plain volume after the stack is started again. A failed extract
 * leaves the old data where it was. Both directories are root-only (0700), so a web server serving the
 * volume cannot reach them, and they are never left in a MariaDB datadir while MariaDB runs (see restore/run.ts).
 */
export const STAGING = '.mbs-restore-new';
export const OLD = '.mbs-restore-old';

/**
 * How far a volume's swap got, written to the state file before each step so that crash recovery
 * (settleSwap) can put the volume back into one whole state.
 */
export type SwapPhase = 'staging' | 'swap-out' | 'swap-in' | 'cleanup';

export interface SwapRecord {
  /** The volume's directory as this process sees it. */
  dir: string;
  phase: SwapPhase;
  /** The old or the new content is a MariaDB datadir: nothing of ours may stay there while MariaDB runs. */
  datadir: boolean;
  /** The archive's `./` entry, for the mount point once the new content is in. */
  root?: TarStats['root'];
  /** The mount point's times before the restore (seconds), given back when the old content stays. */
  before: { atime: number; mtime: number };
  /** Blob areas swapped leaf directory by leaf directory (volume/leaf-swap.ts), not moved whole. */
  leafAreas?: string[];
}

/**
 * Why the volume's file system has no room for a staged copy beside the old data, or null when it has:
 * the archive's file bytes plus a block of slack per entry (small files, directories) and 64 MiB, and an
 * inode per entry. Without room, restore empties the volume first, as it did before staging existed.
 */
export async function noRoomToStage(dir: string, stats: TarStats | undefined): Promise<string | null> {
  if (!stats) return null;
  const fs = await statfs(dir);
  const need = stats.bytes + stats.entries * fs.bsize + 64 * 1024 * 1024;
  const free = fs.bavail * fs.bsize;
  if (free < need) return `${mib(free)} MiB free, a staged copy needs ${mib(need)} MiB`;
  // Some file systems (btrfs, overlay) report no inode figures at all: 0 free of 0 means no limit.
  if (fs.files > 0 && fs.ffree < stats.entries)
    return `${fs.ffree} inodes free, a staged copy needs ${stats.entries}`;
  return null;
}

const mib = (n: number) => Math.floor(n / 1048576);

/** Makes an empty staging directory (a leftover of an earlier run is removed first). */
export async function prepareStaging(dir: string): Promise<string> {
  await removeLeftovers(dir);
  const staging = join(dir, STAGING);
  await mkdir(staging, { mode: 0o700 });
  return staging;
}

/** Removes what an earlier, interrupted run may have left: a staging copy, an old copy awaiting deletion. */
export async function removeLeftovers(dir: string): Promise<void> {
  await removeTree(join(dir, STAGING));
  await removeTree(join(dir, OLD));
}

/**
 * Step 1 of the swap: every top-level entry of the volume (except ours) into OLD; with `leaves`, the blob
 * areas it names stay and only the entries it lists under them go. Re-runnable.
 */
export async function swapOut(dir: string, leaves?: LeafSwap): Promise<void> {
  const old = join(dir, OLD);
  await mkdir(old, { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'EEXIST') throw err;
  });
  const areas = leaves?.areas ?? [];
  await moveEntries(dir, old, (n) => n !== STAGING && n !== OLD && !areas.includes(n));
  if (leaves) await leavesOut(dir, old, leaves.out);
}

/** Step 2: every entry of STAGING up into the volume (`leafAreas` merged into the live ones), then STAGING itself goes. Re-runnable. */
export async function swapIn(dir: string, leafAreas?: readonly string[]): Promise<void> {
  const staging = join(dir, STAGING);
  if (leafAreas) await leavesIn(dir, staging, leafAreas);
  await moveEntries(staging, dir, () => true);
  await rmdir(staging);
}

/** The mount point's times, to give back after our directories come and go. */
export async function dirTimes(dir: string): Promise<SwapRecord['before']> {
  const s = await stat(dir);
  return { atime: s.atimeMs / 1000, mtime: s.mtimeMs / 1000 };
}

/**
 * Deletes the old content once nothing needs it any more, then gives the mount point the archive's mtime
 * again (removing OLD changed it).
 */
export async function removeOld(rec: Pick<SwapRecord, 'dir' | 'root'>): Promise<void> {
  await removeTree(join(rec.dir, OLD));
  if (rec.root) await utimes(rec.dir, secondsTime(rec.root.mtime), secondsTime(rec.root.mtime));
}

/**
 * Puts a volume whose staged restore was interrupted back into one whole state, from the phase recorded
 * before the interruption, with renames only: before the swap began the old data is still in place;
 * midway through moving the old entries out they are moved back; once the new ones were moving in, the rest
 * follow (they were verified complete before the swap began) and the mount point gets the archive's
 * attributes. Returns what the volume holds now, and `finish`, which deletes what is left of ours (for a
 * datadir before MariaDB starts again) and gives the mount point its times.
 */
export async function settleSwap(
  rec: SwapRecord,
): Promise<{ state: 'untouched' | 'restored'; finish: () => Promise<void> }> {
  const { dir, phase } = rec;
  const old = join(dir, OLD);
  const staging = join(dir, STAGING);
  if (phase === 'staging' || phase === 'swap-out') {
    if (phase === 'swap-out' && (await exists(old))) {
      const areas = rec.leafAreas ?? [];
      if (areas.length > 0) await leavesBack(dir, old, areas);
      await moveEntries(old, dir, (n) => !areas.includes(n));
      await rmdir(old);
    }
    const finish = async () => {
      await removeLeftovers(dir);
      await utimes(dir, secondsTime(rec.before.atime), secondsTime(rec.before.mtime));
    };
    return { state: 'untouched', finish };
  }
  if (phase === 'swap-in') {
    if (await exists(staging)) await swapIn(dir, rec.leafAreas);
    await finishDir(dir, rec.root);
  }
  return { state: 'restored', finish: () => removeOld(rec) };
}

/** Is the directory a MariaDB/MySQL or PostgreSQL datadir, or holds one a level down (Bitnami's `data/`)? */
export async function holdsDatadir(dir: string, depth = 1): Promise<boolean> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return false;
  }
  // MariaDB's (ibdata1, aria_log_control) or PostgreSQL's (PG_VERSION): a server owns every directory in it.
  if (names.includes('ibdata1') || names.includes('aria_log_control') || names.includes('PG_VERSION'))
    return true;
  if (depth === 0) return false;
  for (const n of names) {
    if (isUndecodable(n)) continue; // not a datadir's name; as a string it could not be opened
    const p = join(dir, n);
    if ((await lstat(p)).isDirectory() && (await holdsDatadir(p, depth - 1))) return true;
  }
  return false;
}

/** Moves every entry `keep` names; by its raw bytes, so a name that is not UTF-8 moves too. */
async function moveEntries(from: string, to: string, keep: (name: string) => boolean): Promise<void> {
  const at = (dir: string, name: Buffer) => Buffer.concat([Buffer.from(`${dir}/`), name]);
  for (const n of await readdir(from, { encoding: 'buffer' }))
    if (keep(n.toString())) await rename(at(from, n), at(to, n));
}

async function exists(p: string): Promise<boolean> {
  return lstat(p).then(
    () => true,
    () => false,
  );
}

/** How many `find -delete` run at once on one tree. */
const DELETERS = 4;
/** A directory with more entries than this is deleted by one `find` (its paths are not listed). */
const MAX_SPLIT = 1024;

/**
 * Deletes a tree without following symlinks (GNU find); a missing tree is fine. Deleting is bound by the
 * disk's latency more than by CPU (27,000 files: 7.0–7.4 s one `find` after the other, 1.8–4.6 s two at
 * once, 0.6–0.7 CPU s either way, on the 2-core test machine), so the tree's subdirectories two levels down
 * are shared out over DELETERS `find` processes, then one more removes what is left (the emptied levels).
 */
export async function removeTree(path: string): Promise<void> {
  if (!(await exists(path))) return;
  await deleteInParallel(path).catch((err: Error) => {
    throw new SidecarError(
      'RESTORE_FAILED',
      `deleting ${path} failed: ${err.message}`,
      `delete it by hand (rm -rf ${path})`,
    );
  });
}

async function deleteInParallel(path: string): Promise<void> {
  const parts: string[] = [];
  for (const top of await readdir(path, { withFileTypes: true })) {
    // Dirent types come from the directory itself (lstat-like): a symlink is never descended.
    // A name that is not UTF-8 cannot be given to find as a string: the last find, from the top, takes it.
    if (!top.isDirectory() || isUndecodable(top.name)) continue;
    const dir = join(path, top.name);
    const below = await readdir(dir);
    if (below.length > MAX_SPLIT) parts.push(dir);
    else parts.push(...below.filter((n) => !isUndecodable(n)).map((n) => join(dir, n)));
  }
  const groups = Array.from({ length: DELETERS }, (_, g) => parts.filter((_p, i) => i % DELETERS === g));
  await Promise.all(groups.filter((g) => g.length > 0).map((g) => findDelete(g)));
  await findDelete([path]);
}

/**
 * Crash recovery (recover/run.ts), before the stack is started again: settles every interrupted swap
 * with renames, deletes a datadir's leftovers at once and returns the rest to delete once the stack runs.
 */
export async function settleInterrupted(
  swaps: Record<string, SwapRecord>,
  warn: (msg: string, fields: Record<string, unknown>) => void,
): Promise<{ states: Record<string, 'untouched' | 'restored'>; later: (() => Promise<void>)[] }> {
  const states: Record<string, 'untouched' | 'restored'> = {};
  const later: (() => Promise<void>)[] = [];
  for (const [name, rec] of Object.entries(swaps)) {
    try {
      const r = await settleSwap(rec);
      states[name] = r.state;
      if (rec.datadir) await r.finish();
      else later.push(r.finish);
    } catch (err) {
      warn(
        `could not settle the interrupted restore of ${name} in ${rec.dir} (${(err as Error).message}); ` +
          `check it by hand: its old content is in ${OLD}, the new one in ${STAGING}`,
        { volume: name, dir: rec.dir, phase: rec.phase },
      );
    }
  }
  return { states, later };
}

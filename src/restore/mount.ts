import type Docker from 'dockerode';
import type { TarStats } from '../archive/tar-guard.js';
import { everyWhile } from '../common/every-while.js';
import type { Logger } from '../observe/logger.js';
import { emptyDir, finishDir } from '../volume/dir-untar.js';
import { flushFileSystem } from '../volume/flush.js';
import type { LeafSwap } from '../volume/leaf-swap.js';
import { emptyVolume, runInVolume } from '../volume/restore-volume.js';
import {
  dirTimes,
  holdsDatadir,
  noRoomToStage,
  prepareStaging,
  removeOld,
  type SwapPhase,
  type SwapRecord,
  settleSwap,
  swapIn,
  swapOut,
} from '../volume/swap.js';
import type { RestoreProgress } from './progress.js';
import { finishScript } from './steps.js';

/** How often a staged copy being unpacked is flushed to disk. */
const FLUSH_EVERY_MS = 1000;

/**
 * One file volume's restore, with the stack stopped. With the volume's directory (the `mount` write path):
 * staged beside the old data and swapped in (stagedRestore; `staged`: the unpacking was done before the stop,
 * stageAhead), or, when its file system has no room for both, emptied and unpacked in place. Through Docker:
 * emptied by a helper, then putArchive, then the mount point's attributes.
 */
export async function restoreFileVolume(i: {
  docker: Docker;
  volume: string;
  image: string;
  dir: string | null;
  /** extractInto for this volume's archive; into a directory, or through putArchive with null. */
  extract(into: string | null): Promise<TarStats | undefined>;
  /** See StagedInput. */
  beforeSwap?: StagedInput['beforeSwap'];
  stats: TarStats | undefined;
  staged?: Staged;
  progress: RestoreProgress;
  name: string;
  log: Logger;
}): Promise<{ deleteOldLater: SwapRecord | undefined; ms: Record<string, number> }> {
  const t0 = Date.now();
  const record = (rec: SwapRecord | undefined) => i.progress.swap(i.name, rec);
  if (i.dir && i.staged) {
    const r = await swapStaged(i.staged, record);
    await i.progress.restored(i.name, r.deleteOldLater !== undefined);
    return { ...r, ms: { swapMs: Date.now() - t0 } };
  }
  const noRoom = i.dir ? await noRoomToStage(i.dir, i.stats) : null;
  if (i.dir && noRoom) {
    i.log.warn(
      { step: 'restore', volume: i.name, dir: i.dir },
      `no room to unpack ${i.name} beside its current data (${noRoom}): emptying it first, so a failed extract leaves it partial`,
    );
    await emptyDir(i.dir);
    const emptyMs = Date.now() - t0;
    await i.progress.mark(i.name, 'emptied');
    await i.extract(i.dir);
    await finishDir(i.dir, i.stats?.root);
    await i.progress.mark(i.name, 'restored');
    return { deleteOldLater: undefined, ms: { emptyMs, extractMs: Date.now() - t0 - emptyMs } };
  }
  if (i.dir) {
    await i.progress.mark(i.name, 'staging');
    const r = await stagedRestore({
      dir: i.dir,
      extract: i.extract,
      ...(i.beforeSwap ? { beforeSwap: i.beforeSwap } : {}),
      stats: i.stats,
      record,
    });
    await i.progress.restored(i.name, r.deleteOldLater !== undefined);
    return { ...r, ms: { extractMs: Date.now() - t0 } };
  }
  await emptyVolume(i.docker, i.volume, i.image);
  const emptyMs = Date.now() - t0;
  await i.progress.mark(i.name, 'emptied');
  await i.extract(null);
  // A snapshot taken in maintenance mode must not bring the site back in maintenance mode.
  await runInVolume(i.docker, i.volume, i.image, finishScript(i.stats?.root));
  await i.progress.mark(i.name, 'restored');
  return { deleteOldLater: undefined, ms: { emptyMs, extractMs: Date.now() - t0 - emptyMs } };
}

/**
 * Whether a volume can be unpacked into its staging directory while the stack still runs, so that the
 * downtime is the swap alone. Only where nothing in use sees the staging directory: the volume exists and
 * this process can write its directory, and it holds no MariaDB datadir (a running server takes any
 * directory in its datadir for a database; a datadir volume is staged with the stack stopped, as before).
 * Moodle's code and dataroot have no use for an unknown root-only (0700) directory at their top. Without a
 * verification pass the archive's entry count is unknown: room is checked for the worst case its raw size
 * allows. Every entry costs at least 512 bytes of tar and at most one block per 512 bytes of tar on disk,
 * so (rawBytes / 512) entries of a block each bound it; where that does not fit, the caller verifies first
 * and decides with the exact figures (noRoomToStage).
 */
export async function canStageAhead(dir: string | null, rawBytes: number): Promise<boolean> {
  if (!dir || (await holdsDatadir(dir))) return false;
  const entries = Math.ceil(rawBytes / 512);
  const worst: TarStats = {
    entries,
    files: entries,
    dirs: 0,
    symlinks: 0,
    hardlinks: 0,
    bytes: 0,
    mariadbDatadir: false,
  };
  return (await noRoomToStage(dir, worst)) === null;
}

export interface StagedInput {
  /** The volume's directory (the `mount` write path). */
  dir: string;
  /** Unpacks the archive into the given directory (extractInto with the tar guard in line); its guard's stats. */
  extract(into: string): Promise<TarStats | undefined>;
  /** What verification found in the archive (undefined: not verified beforehand). */
  stats: TarStats | undefined;
  /** Records the swap's progress in the state file before each step (undefined: nothing left to settle). */
  record(rec: SwapRecord | undefined): Promise<void>;
  /**
   * Called with the stack stopped, right before the swap: the blob areas to swap leaf directory by leaf
   * directory and what leaves them (restore/leaf-plan.ts), or undefined to move every entry whole.
   */
  beforeSwap?: () => Promise<LeafSwap | undefined>;
}

/** A volume unpacked into its staging directory, not swapped in yet. */
export interface Staged {
  rec: SwapRecord;
  beforeSwap?: StagedInput['beforeSwap'];
  /** What the in-line guard saw while unpacking (or the verification, through putArchive). */
  stats: TarStats | undefined;
}

/**
 * One volume's restore on the mount path, with the stack stopped: unpack into a staging directory inside the
 * volume (stage), swap it in by renames and give the mount point the archive's attributes (swapStaged).
 */
export async function stagedRestore(i: StagedInput): Promise<{ deleteOldLater: SwapRecord | undefined }> {
  return swapStaged(await stage(i), i.record);
}

/**
 * Unpacks the archive into STAGING inside the volume and writes it to disk; the old data are not touched. A
 * failed extract (the sha256, the decompression, the guard, a full disk) or flush removes the staging copy and
 * leaves the volume as it was.
 * The swap record's `datadir` also counts what the archive turned out to hold.
 */
export async function stage(i: StagedInput): Promise<Staged> {
  const rec: SwapRecord = {
    before: await dirTimes(i.dir),
    dir: i.dir,
    phase: 'staging',
    datadir: Boolean(i.stats?.mariadbDatadir) || (await holdsDatadir(i.dir)),
    ...(i.stats?.root ? { root: i.stats.root } : {}),
  };
  await i.record(rec);
  const staging = await prepareStaging(i.dir);
  let seen: TarStats | undefined;
  try {
    // Written to disk as it is unpacked, so the last flush has little left: the kernel's own writeback
    // starts only at 10% of memory dirty, so a 1 GB restore's whole writeback came at the end, in series.
    seen = await everyWhile(i.extract(staging), FLUSH_EVERY_MS, () => flushFileSystem(staging));
    // On disk before anything is swapped or deleted, and before the stop (volume/flush.ts says why).
    await flushFileSystem(staging);
  } catch (err) {
    await discardStaged({ rec, stats: undefined }, i.record);
    throw err;
  }
  const stats = seen ?? i.stats;
  if (stats?.mariadbDatadir) rec.datadir = true;
  if (!rec.root && stats?.root) rec.root = stats.root;
  await i.record(rec);
  return { rec, stats, ...(i.beforeSwap ? { beforeSwap: i.beforeSwap } : {}) };
}

/** Removes a staging copy that will not be swapped in; the old data were never touched. */
export async function discardStaged(
  staged: Staged,
  record: (rec: SwapRecord | undefined) => Promise<void>,
): Promise<void> {
  await (await settleSwap(staged.rec)).finish();
  await record(undefined);
}

/**
 * Swaps a staged volume in (stack stopped). Returns the record of a volume whose old content, now in OLD,
 * still has to be deleted (`removeOld`): a plain volume's is deleted after the stack runs again, a datadir's
 * here, because MariaDB takes any directory in its datadir for a database.
 */
async function swapStaged(
  staged: Staged,
  record: (rec: SwapRecord | undefined) => Promise<void>,
): Promise<{ deleteOldLater: SwapRecord | undefined }> {
  const rec = staged.rec;
  const step = (phase: SwapPhase) => record({ ...rec, phase });
  let phase: SwapPhase = 'staging';
  try {
    const leaves = await staged.beforeSwap?.();
    if (leaves) rec.leafAreas = leaves.areas;
    phase = 'swap-out';
    await step(phase);
    await swapOut(rec.dir, leaves);
    phase = 'swap-in';
    await step(phase);
    await swapIn(rec.dir, rec.leafAreas);
    // A snapshot taken in maintenance mode must not bring the site back in maintenance mode.
    await finishDir(rec.dir, rec.root);
  } catch (err) {
    // A rename failing midway: put the volume back into one whole state, as crash recovery would.
    await (await settleSwap({ ...rec, phase })).finish();
    await record(undefined);
    throw err;
  }
  await step('cleanup');
  if (!rec.datadir) return { deleteOldLater: rec };
  await removeOld(rec);
  return { deleteOldLater: undefined };
}

import type Docker from 'dockerode';
import type { TarStats } from '../archive/tar-guard.js';
import type { Logger } from '../observe/logger.js';
import { emptyDir, finishDir } from '../volume/dir-untar.js';
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

/**
 * One file volume's restore, with the stack stopped. With the volume's directory (the `mount` write path):
 * staged beside the old data and swapped in (stagedRestore), or, when its file system has no room for both,
 * emptied and unpacked in place. Through Docker: emptied by a helper, then
 * putArchive, then the mount point's attributes.
 */
export async function restoreFileVolume(i: {
  docker: Docker;
  volume: string;
  image: string;
  dir: string | null;
  /** extractInto for this volume's archive; into a directory, or through putArchive with null. */
  extract(into: string | null): Promise<void>;
  stats: TarStats | undefined;
  progress: RestoreProgress;
  name: string;
  log: Logger;
}): Promise<{ deleteOldLater: SwapRecord | undefined; ms: Record<string, number> }> {
  const t0 = Date.now();
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
      stats: i.stats,
      record: (rec) => i.progress.swap(i.name, rec),
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

export interface StagedInput {
  /** The volume's directory (the `mount` write path). */
  dir: string;
  /** Unpacks the verified archive into the given directory (extractInto with the tar guard in line). */
  extract(into: string): Promise<void>;
  /** What verification found in the archive. */
  stats: TarStats | undefined;
  /** Records the swap's progress in the state file before each step (undefined: nothing left to settle). */
  record(rec: SwapRecord | undefined): Promise<void>;
}

/**
 * One volume's restore on the mount path, with the stack stopped: unpack into a staging directory inside the
 * volume, swap it in by renames, give the mount point the archive's attributes. A failed extract removes the
 * staging copy and leaves the old data as it was. Returns the record of a volume whose old content, now in OLD,
 * still has to be deleted (`removeOld`): a plain volume's is deleted after the stack runs again, a datadir's here, because
 * MariaDB takes any directory in its datadir for a database.
 */
export async function stagedRestore(i: StagedInput): Promise<{ deleteOldLater: SwapRecord | undefined }> {
  const datadir = Boolean(i.stats?.mariadbDatadir) || (await holdsDatadir(i.dir));
  const rec: SwapRecord = {
    before: await dirTimes(i.dir),
    dir: i.dir,
    phase: 'staging',
    datadir,
    ...(i.stats?.root ? { root: i.stats.root } : {}),
  };
  const step = (phase: SwapPhase) => i.record({ ...rec, phase });
  await step('staging');
  const staging = await prepareStaging(i.dir);
  try {
    await i.extract(staging);
  } catch (err) {
    // The old data was never touched; without the staging copy there is nothing left to settle.
    await (await settleSwap(rec)).finish();
    await i.record(undefined);
    throw err;
  }
  let phase: SwapPhase = 'swap-out';
  try {
    await step(phase);
    await swapOut(i.dir);
    phase = 'swap-in';
    await step(phase);
    await swapIn(i.dir);
    // A snapshot taken in maintenance mode must not bring the site back in maintenance mode.
    await finishDir(i.dir, rec.root);
  } catch (err) {
    // A rename failing midway: put the volume back into one whole state, as crash recovery would.
    await (await settleSwap({ ...rec, phase })).finish();
    await i.record(undefined);
    throw err;
  }
  await step('cleanup');
  if (!datadir) return { deleteOldLater: rec };
  await removeOld(rec);
  return { deleteOldLater: undefined };
}

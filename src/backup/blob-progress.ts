import { blobsLabel, ProgressBoard, type VolumeTotal } from '../observe/progress.js';
import { listBlobs } from '../store/listing.js';
import type { BlobSession, BlobVolume } from './context.js';

/** How long the count of new blobs may take per volume: it runs in maintenance mode, for a display only. */
const COUNT_LIMIT_MS = 3000;

/**
 * What the store lacks of a dataroot, counted from a listing (names and sizes; no file is read): the
 * progress total of the phase that stores them. Undefined bytes past the time limit: the line then says
 * "~" and grows with what it sees.
 */
export async function newBlobTotal(
  dir: string,
  has: (sha1: string) => boolean,
  limitMs = COUNT_LIMIT_MS,
): Promise<VolumeTotal> {
  const end = Date.now() + limitMs;
  let files = 0;
  let bytes = 0;
  try {
    for await (const l of listBlobs(dir)) {
      if (Date.now() > end) return { estimated: true };
      // As backup/blobs.ts stores them: plain files only (a hard-linked one stays in the tarball).
      if (l.kind !== 'blob' || l.nlink !== 1 || has(l.sha1)) continue;
      files++;
      bytes += l.size;
    }
  } catch {
    return { estimated: true };
  }
  return { bytes, files, estimated: false };
}

/**
 * The terminal's lines for a phase that stores new blobs (before the stop; online mode, inside the read):
 * one per volume, fed by the volume's `progress` hook that backup/blobs.ts calls for each blob it stores
 * and once at the end of the volume's phase. `finish` removes the hooks.
 */
export class StoreProgress {
  private constructor(
    private readonly board: ProgressBoard,
    private readonly volumes: BlobVolume[],
  ) {}

  /** Counts what each volume will store and hooks its line; undefined off a terminal. */
  static async start(s: BlobSession, volumes: BlobVolume[]): Promise<StoreProgress | undefined> {
    if (!ProgressBoard.enabled() || volumes.length === 0) return undefined;
    const totals: Record<string, VolumeTotal> = {};
    for (const bv of volumes)
      totals[blobsLabel(bv.v.short)] = await newBlobTotal(bv.dir, (sha1) => s.writer.has(sha1));
    const p = new StoreProgress(new ProgressBoard(totals), volumes);
    for (const bv of volumes) p.hook(bv);
    return p;
  }

  private hook(bv: BlobVolume): void {
    const line = this.board.item(blobsLabel(bv.v.short));
    let stored = 0;
    bv.progress = {
      stored: (bytes) => {
        stored++;
        line.advance(bytes);
      },
      done: () => {
        // Nothing new: the store's log line says so; a line of zeros would only add noise.
        if (stored > 0) line.finish();
        // One phase per hook: the window's few late blobs (stop mode) draw nothing.
        bv.progress = undefined;
      },
    };
  }

  /** Removes the hooks a phase that failed midway left (a finished phase removed its own). */
  finish(): void {
    for (const bv of this.volumes) bv.progress = undefined;
  }
}

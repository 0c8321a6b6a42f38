import { blobsLabel, type Progress, ProgressBoard, type VolumeTotal } from '../observe/progress.js';
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
 * one per volume, fed by the volume's `onStored` hook that backup/blobs.ts calls for each blob it stores.
 * A volume's line is finished when the next volume's starts, or by `finish`.
 */
export class StoreProgress {
  private current: Progress | undefined;

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
    bv.onStored = (bytes) => {
      if (this.current !== line) {
        this.current?.finish();
        this.current = line;
      }
      line.advance(bytes);
    };
  }

  /** The last line of the volume being stored; the hooks are removed (later phases draw nothing). */
  finish(): void {
    this.current?.finish();
    this.current = undefined;
    for (const bv of this.volumes) bv.onStored = undefined;
  }
}

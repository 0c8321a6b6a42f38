import { blobsLabel, ProgressBoard, type VolumeTotal } from '../observe/progress.js';
import { type ListedBlob, listBlobs } from '../store/listing.js';
import { SharedInodes } from '../store/shared-inodes.js';
import type { BlobSession, BlobVolume } from './context.js';

/**
 * A count still running after this long is given up: the phase is likely over before it would help, and
 * the blobs stored meanwhile are held in a set (80 bytes each, measured; at the pack writer's ~4,000 blobs a
 * second, 30 s is about 10 MB).
 */
const COUNT_LIMIT_MS = 30_000;

/**
 * A phase shorter than this draws no percent, and needs no count: a 2nd run's first look starts from the
 * last listing and ends in a fraction of a second, while the count (a listing of every file) took CPU from
 * it on two cores (200,000 files at a terminal: the look 436–483 ms with the count, 198–226 ms without).
 */
const COUNT_DELAY_MS = 1000;

/**
 * What the store lacks of a dataroot, counted from a listing (names and sizes; no file is read): the
 * progress total of the phase that stores them. `isNew` decides per blob. Undefined bytes when given up
 * (time limit, abort, an error): the line then keeps saying "~".
 */
export async function newBlobTotal(
  dir: string,
  isNew: (sha1: string) => boolean,
  /** `links`: the run's for this volume, whose walk the listing beside this count shares. */
  opts: { limitMs?: number; signal?: AbortSignal; links?: SharedInodes } = {},
): Promise<VolumeTotal> {
  const end = Date.now() + (opts.limitMs ?? COUNT_LIMIT_MS);
  let files = 0;
  let bytes = 0;
  const links = opts.links ?? new SharedInodes(dir);
  try {
    for await (const l of listBlobs(dir)) {
      if (opts.signal?.aborted || Date.now() > end) return { estimated: true };
      // As backup/blobs.ts stores them: not a blob hard-linked to a non-blob file (the tarball keeps it).
      if (l.kind !== 'blob' || !isNew(l.sha1) || !(await links.storable(l))) continue;
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
 * and once at the end of the volume's phase. The total is counted alongside the phase (a second listing),
 * so the display adds no wait in maintenance mode: no percent until the count is in. A blob the phase
 * stores before the count reaches it is remembered until the count ends, so it is still counted as new.
 */
export class StoreProgress {
  private readonly stop = new AbortController();
  /** Counts not started yet. */
  private readonly timers: NodeJS.Timeout[] = [];

  private constructor(
    private readonly board: ProgressBoard,
    private readonly volumes: BlobVolume[],
  ) {}

  /** Hooks each volume's line and starts counting; undefined off a terminal. */
  static start(s: BlobSession, volumes: BlobVolume[]): StoreProgress | undefined {
    if (!ProgressBoard.enabled() || volumes.length === 0) return undefined;
    const board = new ProgressBoard(
      Object.fromEntries(volumes.map((bv) => [blobsLabel(bv.v.short), { estimated: true }])),
    );
    const p = new StoreProgress(board, volumes);
    for (const bv of volumes) p.hook(s, bv);
    return p;
  }

  private hook(s: BlobSession, bv: BlobVolume): void {
    const label = blobsLabel(bv.v.short);
    const line = this.board.item(label);
    let stored = 0;
    let storedWhileCounting: Set<string> | undefined = new Set();
    // The store's index, not the writer's own view: a blob the writer has taken up but not stored yet is new.
    const isNew = (sha1: string) =>
      !s.index.has(Buffer.from(sha1, 'hex')) || Boolean(storedWhileCounting?.has(sha1));
    const later = setTimeout(() => {
      void newBlobTotal(bv.dir, isNew, { signal: this.stop.signal, links: bv.links }).then((total) => {
        storedWhileCounting = undefined;
        if (total.bytes !== undefined) this.board.setTotal(label, total);
      });
    }, COUNT_DELAY_MS);
    this.timers.push(later);
    bv.progress = {
      stored: (blob: ListedBlob) => {
        stored++;
        storedWhileCounting?.add(blob.sha1);
        line.advance(blob.size);
      },
      done: () => {
        clearTimeout(later);
        // Nothing new: the store's log line says so; a line of zeros would only add noise.
        if (stored > 0) line.finish();
        // One phase per hook: the window's few late blobs (stop mode) draw nothing.
        bv.progress = undefined;
      },
    };
  }

  /** Stops the counts still running and removes the hooks a phase that failed midway left. */
  finish(): void {
    for (const t of this.timers) clearTimeout(t);
    this.stop.abort();
    for (const bv of this.volumes) bv.progress = undefined;
  }
}

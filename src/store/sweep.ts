/**
 * Mark-and-sweep over packs, as a pure function (prune does the I/O under the lock): given which blobs the
 * kept snapshots reference and where the index says each blob lives, which packs can go and which are
 * worth rewriting. A blob two packs hold (a repack or two racing backups) is live only in the pack the index
 * points to; its other copy is dead weight.
 */

/** A pack's blobs; `H` names a blob (a hex SHA-1, or prune's offset of its record in an index file). */
export interface PackContents<H = string> {
  id: string;
  storedSize: number;
  /** Iterated once (prune passes a generator: a pack of 16,000 blobs makes no array of objects). */
  blobs: Iterable<{ sha1: H; size: number }>;
}

export interface SweepOptions {
  /**
   * A pack whose live bytes are below this fraction of its blob bytes is repacked (its live blobs written
   * into new packs, then it is deleted). Default 0.5: a pack that is mostly dead.
   */
  repackBelow?: number;
}

export interface RepackCandidate<H = string> {
  id: string;
  live: H[];
  liveBytes: number;
  deadBytes: number;
}

export interface SweepPlan<H = string> {
  /** Packs with no live blob: delete them (after their index files no longer name them). */
  dead: string[];
  /** Packs mostly dead: rewrite `live`, then delete. */
  repack: RepackCandidate<H>[];
  /** Packs kept as they are. */
  keep: string[];
  /** Stored bytes the dead packs free (repacks free more, once done). */
  freedBytes: number;
}

export function planSweep<H = string>(
  packs: readonly PackContents<H>[],
  isLive: (sha1: H) => boolean,
  holder: (sha1: H) => string | undefined,
  opts: SweepOptions = {},
): SweepPlan<H> {
  const threshold = opts.repackBelow ?? 0.5;
  if (!(threshold >= 0 && threshold <= 1))
    throw new RangeError(`repackBelow must be within 0..1, got ${threshold}`);
  const plan: SweepPlan<H> = { dead: [], repack: [], keep: [], freedBytes: 0 };
  for (const p of packs) {
    const live: H[] = [];
    let liveBytes = 0;
    let deadBytes = 0;
    for (const b of p.blobs) {
      if (isLive(b.sha1) && holder(b.sha1) === p.id) {
        live.push(b.sha1);
        liveBytes += b.size;
      } else {
        deadBytes += b.size;
      }
    }
    const total = liveBytes + deadBytes;
    if (live.length === 0) {
      plan.dead.push(p.id);
      plan.freedBytes += p.storedSize;
    } else if (total > 0 && liveBytes / total < threshold) {
      plan.repack.push({ id: p.id, live, liveBytes, deadBytes });
    } else {
      plan.keep.push(p.id);
    }
  }
  return plan;
}

/** Live blobs that no pack holds: a broken closure (verify reports them; prune must not run on it). */
export function missingBlobs(live: Iterable<string>, holder: (sha1: string) => string | undefined): string[] {
  const out: string[] = [];
  for (const sha1 of live) if (holder(sha1) === undefined) out.push(sha1);
  return out;
}

import type { Backend } from '../storage/backend.js';
import type { BlobSet } from './blob-set.js';
import type { StoreEncoding } from './encoding.js';
import { HASH_BYTES } from './entry-table.js';
import { BLOB_RECORD_BYTES, type PackRecord, readU64 } from './index-file.js';
import { forEachIndexFile } from './store-io.js';

/**
 * Blobs to locate: `find` calls `each` with the position of every one whose hash is the 20 bytes of `src`
 * at `at`; each position keeps a pack number (-1: none yet).
 */
export interface Locatable {
  find(src: Uint8Array, at: number, each: (i: number) => void): void;
  packOf(i: number): number;
  /** `offset`: the blob's data offset in that pack's tar (0 for an unframed pack, where it is not used). */
  setPack(i: number, pack: number, offset: number): void;
}

/**
 * Where blobs are, without the store's whole index in memory: each index file is read in turn and each record
 * looked up in the callers' sorted hashes, which keep a pack number a blob (a restore's sets: 4 bytes a blob
 * instead of the 36 of an index entry beside them; prune's mark). A blob in two packs is located in one
 * stored with its recorded size when there is one, else in the first read. Returns the packs the numbers
 * refer to and, by index file id, the ids of the packs each names.
 */
export async function locateBlobs(
  backend: Backend,
  enc: StoreEncoding,
  targets: readonly Locatable[],
  stored: Map<string, { size: number }>,
): Promise<{ packs: PackRecord[]; indexFiles: Map<string, string[]> }> {
  const packs: PackRecord[] = [];
  const good: boolean[] = [];
  const numbers = new Map<string, number>();
  const indexFiles = new Map<string, string[]>();
  await forEachIndexFile(backend, enc, (decoded, id) => {
    indexFiles.set(
      id,
      decoded.map((d) => d.pack.id),
    );
    for (const { pack, records } of decoded) {
      let p = numbers.get(pack.id);
      if (p === undefined) {
        p = packs.length;
        packs.push(pack);
        numbers.set(pack.id, p);
        good.push(stored.get(pack.id)?.size === pack.storedSize);
      }
      const here = p;
      // Where a blob lies in its pack is read only from frames: an unframed pack's offsets are not kept.
      const framed = pack.frames !== undefined;
      let at = 0;
      for (const t of targets) {
        const place = (i: number) => {
          const was = t.packOf(i);
          if (was < 0 || (!good[was] && good[here]))
            t.setPack(i, here, framed ? readU64(records, at + HASH_BYTES) : 0);
        };
        for (at = 0; at + BLOB_RECORD_BYTES <= records.length; at += BLOB_RECORD_BYTES)
          t.find(records, at, place);
      }
    }
  });
  return { packs, indexFiles };
}

/** A restore's set as blobs to locate (its hash order built once). */
export function locatableSet(set: BlobSet): Locatable {
  const order = set.hashOrder();
  return {
    find: (src, at, each) => set.find(order, src, at, each),
    packOf: (i) => set.packOf(i),
    setPack: (i, p, offset) => set.setPack(i, p, offset),
  };
}

/**
 * Why located blobs cannot be restored (at most `max`): not indexed, or their pack missing or of the wrong
 * size. `count` blobs, `hex(i)` naming each.
 */
export function locateProblems(
  count: number,
  t: Pick<Locatable, 'packOf'> & { hex(i: number): string },
  packs: readonly PackRecord[],
  stored: Map<string, { size: number }>,
  max = 100,
): string[] {
  const problems: string[] = [];
  for (let i = 0; i < count && problems.length < max; i++) {
    const p = packs[t.packOf(i)];
    if (!p) {
      problems.push(`blob ${t.hex(i)} is in no pack`);
      continue;
    }
    const size = stored.get(p.id)?.size;
    if (size === undefined) problems.push(`pack ${p.id} is missing`);
    else if (size !== p.storedSize) problems.push(`pack ${p.id} has ${size} bytes, not ${p.storedSize}`);
  }
  return problems;
}

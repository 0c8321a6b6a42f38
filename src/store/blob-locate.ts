import type { Backend } from '../storage/backend.js';
import type { BlobSet } from './blob-set.js';
import type { StoreEncoding } from './encoding.js';
import { BLOB_RECORD_BYTES, type PackRecord } from './index-file.js';
import { forEachIndexFile } from './store-io.js';

/**
 * Where the blobs of a restore are, without the store's whole index in memory: each index file is read in
 * turn and each record looked up in the snapshot's sets (sorted views of their hashes), which keep the pack
 * number of every blob found. A million blobs cost 8 bytes more each in the set instead of the 36 of an
 * index entry beside it. A blob in two packs is located in one stored with its recorded size when there is one.
 * Returns the packs the numbers refer to.
 */
export async function locateBlobs(
  backend: Backend,
  enc: StoreEncoding,
  sets: readonly BlobSet[],
  stored: Map<string, { size: number }>,
): Promise<PackRecord[]> {
  const orders = sets.map((s) => s.hashOrder());
  const packs: PackRecord[] = [];
  const good: boolean[] = [];
  const numbers = new Map<string, number>();
  await forEachIndexFile(backend, enc, (decoded) => {
    for (const { pack, records } of decoded) {
      let p = numbers.get(pack.id);
      if (p === undefined) {
        p = packs.length;
        packs.push(pack);
        numbers.set(pack.id, p);
        good.push(stored.get(pack.id)?.size === pack.storedSize);
      }
      const here = p;
      for (let o = 0; o + BLOB_RECORD_BYTES <= records.length; o += BLOB_RECORD_BYTES) {
        sets.forEach((set, k) => {
          set.find(orders[k] as Uint32Array, records, o, (i) => {
            const was = set.packOf(i);
            if (was < 0 || (!good[was] && good[here])) set.setPack(i, here);
          });
        });
      }
    }
  });
  return packs;
}

/** Why blobs of a located set cannot be restored (at most `max`): not indexed, or their pack missing or of the wrong size. */
export function locateProblems(
  set: BlobSet,
  packs: readonly PackRecord[],
  stored: Map<string, { size: number }>,
  max = 100,
): string[] {
  const problems: string[] = [];
  for (let i = 0; i < set.length && problems.length < max; i++) {
    const p = packs[set.packOf(i)];
    if (!p) {
      problems.push(`blob ${set.sha1(i)} is in no pack`);
      continue;
    }
    const size = stored.get(p.id)?.size;
    if (size === undefined) problems.push(`pack ${p.id} is missing`);
    else if (size !== p.storedSize) problems.push(`pack ${p.id} has ${size} bytes, not ${p.storedSize}`);
  }
  return problems;
}

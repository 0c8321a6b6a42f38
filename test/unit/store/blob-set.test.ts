import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { BlobEntry } from '../../../src/store/blob-list.js';
import { BlobSet } from '../../../src/store/blob-set.js';
import { blobPath } from '../../../src/store/layout.js';

/** Adds blobs `from`..`to`-1 named by `tag` and their number, 1 byte each, at their own place. */
function addBlobs(set: BlobSet, tag: string, from: number, to: number): (i: number) => string {
  const sha1 = (i: number) => createHash('sha1').update(`${tag}${i}`).digest('hex');
  for (let i = from; i < to; i++)
    set.add({ sha1: sha1(i), size: 1, mode: 0o640, uid: 0, gid: 0, mtimeMs: 0, path: blobPath(sha1(i)) });
  return sha1;
}

describe('BlobSet', () => {
  it('gives back every entry as added: sizes past 32 bits, more owners than its palette holds, odd paths', () => {
    const entries: BlobEntry[] = [];
    for (let i = 0; i < 70_000; i++) {
      const sha1 = createHash('sha1').update(`b${i}`).digest('hex');
      entries.push({
        sha1,
        size: i % 1000 === 0 ? 5_000_000_000 + i : i,
        mode: 0o640 | (i % 2 ? 0o2000 : 0),
        uid: i, // 70,000 distinct owners: the last few thousand past the 16-bit palette
        gid: i % 3,
        mtimeMs: 1_700_000_000_123 + i,
        path: i % 500 === 0 ? `filedir/00/00/${sha1}` : blobPath(sha1, i % 7 === 0 ? 'trashdir' : 'filedir'),
      });
    }
    const set = new BlobSet(10); // smaller than the count: grows as it fills
    for (const e of entries) set.add(e);
    expect(set.length).toBe(entries.length);
    for (let i = 0; i < entries.length; i += 997) expect(set.at(i)).toEqual(entries[i]);
    expect(set.at(entries.length - 1)).toEqual(entries.at(-1));
  });
});

describe('BlobSet pack numbers', () => {
  it('keeps pack numbers past 16 bits, the ones set before kept as they were', () => {
    const set = new BlobSet(4);
    for (let i = 0; i < 5; i++) {
      const sha1 = createHash('sha1').update(`p${i}`).digest('hex');
      set.add({ sha1, size: i, mode: 0o640, uid: 1, gid: 1, mtimeMs: 1, path: blobPath(sha1) });
    }
    expect(set.packOf(0)).toBe(-1);
    set.setPack(0, 0);
    set.setPack(1, 65_533);
    set.setPack(2, 70_000); // widens the column
    set.setPack(3, 4_000_000);
    expect([0, 1, 2, 3, 4].map((i) => set.packOf(i))).toEqual([0, 65_533, 70_000, 4_000_000, -1]);
  });
});

describe('BlobSet pack offsets', () => {
  it('keeps where each blob lies in its pack across growth; an offset off a tar block is not known', () => {
    const set = new BlobSet(1);
    addBlobs(set, 'o', 0, 3000);
    set.setPack(0, 0, 512);
    set.setPack(1, 0, 512 * 2 ** 31); // 1 TiB into a pack
    set.setPack(2, 0, 700);
    set.setPack(2999, 7, 1024);
    expect(set.offsetOf(0)).toBe(512);
    expect(set.offsetOf(1)).toBe(512 * 2 ** 31);
    expect(set.offsetOf(2)).toBeUndefined();
    expect(set.offsetOf(3)).toBeUndefined();
    expect(set.offsetOf(2999)).toBe(1024);
    expect(set.packOf(2999)).toBe(7);
    // More blobs after the offsets were given: the column grows with the set and keeps them.
    addBlobs(set, 'o', 3000, 9000);
    set.setPack(8999, 1, 512 * 3);
    expect([set.offsetOf(0), set.offsetOf(2999), set.offsetOf(8999), set.offsetOf(5000)]).toEqual([
      512,
      1024,
      1536,
      undefined,
    ]);
    set.setPack(0, 2, 0); // located again, in an unframed pack
    expect(set.offsetOf(0)).toBeUndefined();
  });

  it('a set located only in unframed packs (offset 0) knows no offsets', () => {
    const set = new BlobSet(2);
    addBlobs(set, 'u', 0, 2);
    set.setPack(0, 0, 0);
    set.setPack(1, 3, 0);
    expect([set.offsetOf(0), set.offsetOf(1), set.packOf(1)]).toEqual([undefined, undefined, 3]);
  });
});

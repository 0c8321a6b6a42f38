import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { getCodec } from '../../../src/archive/codec.js';
import { LocalBackend } from '../../../src/storage/local.js';
import { locatableSet, locateBlobs, locateProblems } from '../../../src/store/blob-locate.js';
import { BlobSet } from '../../../src/store/blob-set.js';
import type { PackRecord } from '../../../src/store/index-file.js';
import { blobPath } from '../../../src/store/layout.js';
import { writeIndexFile } from '../../../src/store/store-io.js';

const sha1 = (s: string) => createHash('sha1').update(s).digest('hex');
const pack = (c: string, storedSize = 1000): PackRecord => ({
  id: c.repeat(64),
  storedSize,
  codec: 'zstd',
  encrypted: false,
});
const blob = (h: string, i: number) => ({ sha1: Buffer.from(h, 'hex'), offset: 512 * (2 * i + 1), size: 10 });

describe('locateBlobs', () => {
  let dir: string;
  let backend: LocalBackend;
  const enc = { codec: getCodec('zstd') };
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'store-locate-'));
    backend = new LocalBackend(dir);
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("locates each of a set's blobs in a stored pack of the recorded size, both paths of one content, and names what is not restorable", async () => {
    const [x, y, z, w] = ['x', 'y', 'z', 'w'].map(sha1) as [string, string, string, string];
    // x: in a missing pack (indexed first) and in a good one; y: only in a pack of the wrong size;
    // z: in no pack; w: in the good pack, at two paths of the dataroot.
    await writeIndexFile(backend, enc, [{ pack: pack('b'), blobs: [blob(x, 0)] }]);
    await writeIndexFile(backend, enc, [
      { pack: pack('a'), blobs: [blob(w, 0), blob(x, 1)] },
      { pack: pack('c'), blobs: [blob(y, 0)] },
    ]);
    const stored = new Map([
      [pack('a').id, { size: 1000 }],
      [pack('c').id, { size: 999 }],
    ]);
    const set = new BlobSet(2);
    const entry = (h: string, path = blobPath(h)) => ({
      sha1: h,
      size: 10,
      mode: 0o640,
      uid: 1,
      gid: 1,
      mtimeMs: 0,
      path,
    });
    for (const e of [entry(x), entry(w), entry(y), entry(z), entry(w, blobPath(w, 'trashdir'))]) set.add(e);

    const { packs, indexFiles } = await locateBlobs(backend, enc, [locatableSet(set)], stored);
    expect(indexFiles.size).toBe(2);
    const packOf = (i: number) => packs[set.packOf(i)]?.id;
    expect([0, 1, 4].map(packOf)).toEqual([pack('a').id, pack('a').id, pack('a').id]);
    expect(packOf(2)).toBe(pack('c').id);
    expect(set.packOf(3)).toBe(-1);
    expect(
      locateProblems(set.length, { packOf: (i) => set.packOf(i), hex: (i) => set.sha1(i) }, packs, stored),
    ).toEqual([`pack ${pack('c').id} has 999 bytes, not 1000`, `blob ${z} is in no pack`]);
  });
});

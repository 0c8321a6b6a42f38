import { createHash } from 'node:crypto';
import { chmod, lstat, mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { linkLive, matchLive } from '../../../src/restore/link-live.js';
import { BlobSet } from '../../../src/store/blob-set.js';
import { BLOB_AREAS, blobPath } from '../../../src/store/layout.js';
import { leafSlot } from '../../../src/store/leaf-table.js';
import { listBlobs } from '../../../src/store/listing.js';

const sha1 = (s: string) => createHash('sha1').update(s).digest('hex');

describe('linkLive: the live dataroot files a restore can keep', () => {
  let live: string;
  let into: string;
  beforeAll(async () => {
    live = await mkdtemp(join(tmpdir(), 'live-'));
    into = await mkdtemp(join(tmpdir(), 'into-'));
  });
  afterAll(async () => {
    await rm(live, { recursive: true, force: true });
    await rm(into, { recursive: true, force: true });
  });

  it('links same path and size, not a different size or a missing file; notes attributes that differ', async () => {
    const set = new BlobSet();
    const uid = process.getuid?.() ?? 0;
    const gid = process.getgid?.() ?? 0;
    const entry = (text: string, area: 'filedir' | 'trashdir' = 'filedir') => {
      const h = sha1(text);
      const b = {
        sha1: h,
        size: text.length,
        mode: 0o644,
        uid,
        gid,
        mtimeMs: 1_700_000_000_000,
        path: blobPath(h, area),
      };
      set.add(b);
      return b;
    };
    const put = async (path: string, text: string, mode = 0o644) => {
      await mkdir(dirname(join(live, path)), { recursive: true });
      await writeFile(join(live, path), text);
      await chmod(join(live, path), mode);
      await utimes(join(live, path), 1_700_000_000, 1_700_000_000);
    };
    const same = entry('same');
    const sameTrash = entry('same', 'trashdir'); // one content in both areas: two entries
    const resized = entry('resized');
    const missing = entry('missing');
    const chmodded = entry('chmodded');
    await put(same.path, 'same');
    await put(sameTrash.path, 'same');
    await put(resized.path, 'resized but longer');
    await put(chmodded.path, 'chmodded', 0o600);
    await put(`filedir/00/00/${'0'.repeat(40)}`, 'not in the snapshot');
    await put(`${dirname(same.path)}/${sha1('same')}.tmp`, 'a temporary file beside it');
    const r = await matchLive(set, listBlobs(live, BLOB_AREAS, { allNames: true }));
    expect([...r.reused]).toEqual([1, 1, 0, 0, 1]);
    expect(r.count).toBe(3);
    expect(r.differ).toEqual([4]);
    // Per leaf directory: every entry it holds, and those equal to the snapshot's.
    const leaf = (p: string) => leafSlot(dirname(p));
    expect(r.perLeaf.all[leaf(same.path)]).toBe(2); // the blob and the .tmp file
    expect(r.perLeaf.same[leaf(same.path)]).toBe(1);
    expect(r.perLeaf.same[leaf(chmodded.path)]).toBe(0);
    // Linked as asked: all but the trashdir twin, which is then no longer counted as reused.
    await linkLive(set, r, live, into, (n) => n !== 1);
    expect([...r.reused]).toEqual([1, 0, 0, 0, 1]);
    expect(r.count).toBe(2);
    await expect(lstat(join(into, sameTrash.path))).rejects.toThrow();
    expect((await lstat(join(into, same.path))).ino).toBe((await lstat(join(live, same.path))).ino);
    await expect(lstat(join(into, resized.path))).rejects.toThrow();
    await expect(lstat(join(into, missing.path))).rejects.toThrow();
    await expect(lstat(join(into, 'filedir/00'))).rejects.toThrow();
  });
});

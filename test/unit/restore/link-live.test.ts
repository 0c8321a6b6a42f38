import { createHash } from 'node:crypto';
import { chmod, lstat, mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { linkLive } from '../../../src/restore/link-live.js';
import { BlobSet } from '../../../src/store/blob-set.js';
import { blobPath } from '../../../src/store/layout.js';

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
    const r = await linkLive(set, live, into);
    expect([...r.reused]).toEqual([1, 1, 0, 0, 1]);
    expect(r.count).toBe(3);
    expect(r.differ).toEqual([4]);
    expect((await lstat(join(into, same.path))).ino).toBe((await lstat(join(live, same.path))).ino);
    expect((await lstat(join(into, sameTrash.path))).ino).toBe((await lstat(join(live, sameTrash.path))).ino);
    await expect(lstat(join(into, resized.path))).rejects.toThrow();
    await expect(lstat(join(into, missing.path))).rejects.toThrow();
    await expect(lstat(join(into, 'filedir/00'))).rejects.toThrow();
  });
});

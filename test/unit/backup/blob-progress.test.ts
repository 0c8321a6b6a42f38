import { createHash } from 'node:crypto';
import { link, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newBlobTotal } from '../../../src/backup/blob-progress.js';

/** Writes `data` into the dataroot's pool under its SHA-1, as Moodle does; returns the hash. */
async function blob(root: string, data: string, area = 'filedir'): Promise<string> {
  const h = createHash('sha1').update(data).digest('hex');
  const dir = join(root, area, h.slice(0, 2), h.slice(2, 4));
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, h), data);
  return h;
}

describe('newBlobTotal: what the store lacks of a dataroot, by a listing', () => {
  let root: string;
  let known: string;
  let linked: string;

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'mbs-blob-total-'));
    for (let i = 0; i < 20; i++) await blob(root, `post ${i} `.repeat(i + 1));
    known = await blob(root, 'already in the store');
    await blob(root, 'in the trash', 'trashdir');
    // A file hard-linked elsewhere and a symlink stay in the tarball: not the store's to count.
    linked = await blob(root, 'linked twice');
    await link(
      join(root, 'filedir', linked.slice(0, 2), linked.slice(2, 4), linked),
      join(root, 'linked-copy'),
    );
    const fake = 'f'.repeat(40);
    await mkdir(join(root, 'filedir/ff/ff'), { recursive: true });
    await symlink('/etc/hostname', join(root, 'filedir/ff/ff', fake));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('counts files and bytes of the plain blobs that are new, in filedir and trashdir', async () => {
    const expectBytes =
      Array.from({ length: 20 }, (_, i) => `post ${i} `.repeat(i + 1).length).reduce((a, b) => a + b, 0) +
      'in the trash'.length;
    const t = await newBlobTotal(root, (sha1) => sha1 !== known);
    expect(t).toEqual({ bytes: expectBytes, files: 21, estimated: false });
  });

  it('gives up, leaving an estimate, when aborted or past its time limit', async () => {
    const stop = new AbortController();
    stop.abort();
    expect(await newBlobTotal(root, () => true, { signal: stop.signal })).toEqual({ estimated: true });
    expect(await newBlobTotal(root, () => true, { limitMs: -1 })).toEqual({ estimated: true });
  });

  it('a dataroot without filedir or trashdir: nothing to store, no error', async () => {
    expect(await newBlobTotal(join(root, 'missing'), () => true)).toEqual({
      bytes: 0,
      files: 0,
      estimated: false,
    });
  });
});

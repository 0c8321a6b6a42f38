import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scanTarSize } from '../../../src/observe/size-scan.js';

const BLOB = /^(filedir|trashdir)\/[0-9a-f]{2}\/[0-9a-f]{2}\/[0-9a-f]{40}$/;
/** GNU tar options that leave out every blob-shaped file, the leaf directories kept. */
const NO_BLOBS = [
  '--anchored',
  '--no-wildcards-match-slash',
  ...['filedir', 'trashdir'].map((a) => `--exclude=./${a}/*/*/${'[0-9a-f]'.repeat(40)}`),
];

/** Bytes of the tar GNU tar makes of `dir` with `args`. */
function tarBytes(dir: string, args: string[] = []): number {
  return execFileSync('tar', ['-C', dir, ...args, '-cf', '-', '.'], { maxBuffer: 1 << 28 }).length;
}

describe('scanTarSize: the estimate of a volume tar for the progress line', () => {
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mbs-scan-'));
    for (let i = 0; i < 60; i++) {
      const data = `blob ${i} `.repeat(i * 40 + 1);
      const h = createHash('sha1').update(data).digest('hex');
      await mkdir(join(dir, 'filedir', h.slice(0, 2), h.slice(2, 4)), { recursive: true });
      await writeFile(join(dir, 'filedir', h.slice(0, 2), h.slice(2, 4), h), data);
    }
    await mkdir(join(dir, 'lang/de'), { recursive: true });
    await writeFile(join(dir, 'lang/de/a name\nwith a newline.txt'), 'x'.repeat(3000));
    await writeFile(join(dir, 'big'), Buffer.alloc(300_000, 1));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('comes within a tar record of what GNU tar makes of the whole directory', async () => {
    const t = await scanTarSize(dir);
    expect(t?.files).toBe(62);
    expect(Math.abs((t?.bytes ?? 0) - tarBytes(dir))).toBeLessThanOrEqual(10240);
  });

  it('leaves out the blobs an incremental volume keeps in the store, as its tarball does', async () => {
    const t = await scanTarSize(dir, 5000, (p) => BLOB.test(p));
    expect(t?.files).toBe(2);
    const tarball = tarBytes(dir, NO_BLOBS);
    expect(Math.abs((t?.bytes ?? 0) - tarball)).toBeLessThanOrEqual(10240);
    expect(tarball).toBeLessThan(tarBytes(dir) / 2);
  });
});

import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getCodec } from '../../../src/archive/codec.js';
import { readBlobHashes } from '../../../src/store/blob-hashes.js';
import {
  type BlobEntry,
  BlobListWriter,
  type DirEntry,
  formatBlobLine,
  formatDirLine,
  parseBlobLine,
  parseDirLine,
  readBlobList,
} from '../../../src/store/blob-list.js';

const sha1 = (s: string) => createHash('sha1').update(s).digest('hex');
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const blob = (s: string): BlobEntry => {
  const h = sha1(s);
  return {
    sha1: h,
    size: s.length,
    mode: 0o644,
    uid: 1001,
    gid: 1001,
    mtimeMs: 1_700_000_000_123,
    path: `filedir/${h.slice(0, 2)}/${h.slice(2, 4)}/${h}`,
  };
};
const none = { codec: getCodec('none'), level: 0 };

describe('blob lists with directory lines (format 2)', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'blob-list-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const read = async (text: Buffer | string) => {
    const bytes = Buffer.from(text);
    const dirs: DirEntry[] = [];
    const blobs: BlobEntry[] = [];
    for await (const b of readBlobList(Readable.from([bytes]), {
      sha256: sha256(bytes),
      codec: 'none',
      where: 'test',
      onDir: (d) => dirs.push(d),
    }))
      blobs.push(b);
    return { blobs, dirs };
  };

  it('writes blobs, pre-formatted lines and directories, and reads them back apart', async () => {
    const path = join(dir, 'list');
    const w = new BlobListWriter(path, none);
    const [a, b, c] = [blob('a'), blob('b'), blob('c')];
    await w.add(a);
    await w.addLines(formatBlobLine(b) + formatBlobLine(c), 2, b.size + c.size);
    const d: DirEntry = { path: 'filedir/ab/cd', mode: 0o2775, uid: 1, gid: 2, mtimeMs: 1_600_000_000_000 };
    await w.addDir(d);
    const summary = await w.finish();
    expect(summary).toMatchObject({ count: 3, bytes: 3 });
    const text = await readFile(path);
    expect(text.toString().split('\n')[0]).toBe('mbs-blobs 2');
    expect(await read(text)).toEqual({ blobs: [a, b, c], dirs: [d] });
    // Prune's hash-only reader counts the blobs and skips the directory.
    const hashes: string[] = [];
    const n = await readBlobHashes(
      Readable.from([text]),
      { sha256: sha256(text), codec: 'none', where: 'test' },
      (h) => hashes.push(Buffer.from(h).toString('hex')),
    );
    expect(n).toBe(3);
    expect(hashes).toEqual([a.sha1, b.sha1, c.sha1]);
  });

  it('still reads format 1, where a line starting with "-" is not a directory', async () => {
    const a = blob('a');
    expect(await read(`mbs-blobs 1\n${formatBlobLine(a)}`)).toEqual({ blobs: [a], dirs: [] });
    await expect(read(`mbs-blobs 1\n-\t-\t755\t0\t0\t0\tfiledir/ab/cd\n`)).rejects.toThrow(
      /malformed blob list line/,
    );
  });

  it('keeps a time before 1970 (a negative mtime) in blob and directory lines, and reads it back', () => {
    const b = { ...blob('from 1960'), mtimeMs: -315_619_199_877 };
    expect(parseBlobLine(formatBlobLine(b).trimEnd(), 'test')).toEqual(b);
    const d: DirEntry = { path: 'trashdir/ab/cd', mode: 0o750, uid: 0, gid: 0, mtimeMs: -1 };
    expect(parseDirLine(formatDirLine(d).trimEnd(), 'test')).toEqual(d);
  });

  it.each([
    ['a dot-dot', (l: string[]) => l.with(6, 'filedir/../../etc')],
    ['a dot', (l: string[]) => l.with(6, 'filedir/./ab/x')],
    ['one level too deep', (l: string[]) => l.with(6, `${l[6]}/x`)],
    ['another area', (l: string[]) => l.with(6, `cache/${l[6]?.slice('filedir/'.length)}`)],
    ['an octal mode with an 8', (l: string[]) => l.with(2, '648')],
    ['a negative size', (l: string[]) => l.with(1, '-1')],
    ['a negative owner', (l: string[]) => l.with(3, '-1')],
    ['a lone minus as mtime', (l: string[]) => l.with(5, '-')],
    ['an upper-case hash', (l: string[]) => l.with(0, l[0]?.toUpperCase() ?? '')],
    ['an empty field', (l: string[]) => l.with(4, '')],
    ['an eighth field', (l: string[]) => [...l, 'x']],
    ['a missing field', (l: string[]) => l.slice(1)],
  ])('refuses a blob line with %s', (_, change) => {
    const fields = formatBlobLine(blob('x')).trimEnd().split('\t');
    expect(() => parseBlobLine(change(fields).join('\t'), 'test')).toThrow(/malformed blob list line/);
  });

  it.each([
    ['-\t-\t755\t0\t0\t0\tfiledir/ab', 'too shallow'],
    ['-\t-\t755\t0\t0\t0\tfiledir/ab/../cd', 'a dot-dot'],
    ['-\t-\t75x\t0\t0\t0\tfiledir/ab/cd', 'a bad mode'],
    ['-\t-\t755\t0\t0\tfiledir/ab/cd', 'a missing field'],
    ['-\t-\t755\t0\t0\t0\tetc/ab/cd', 'outside the blob areas'],
  ])('refuses a directory line with %s (%s)', (line) => {
    expect(() => parseDirLine(line, 'test')).toThrow(/malformed directory line/);
  });
});

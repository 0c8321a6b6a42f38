import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, mkdir, mkdtemp, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Listed, listBlobs, parseRecord, scanLeaves } from '../../../src/store/listing.js';
import { fileHeader } from '../../../src/store/tar-header.js';

const sha1 = (s: string) => createHash('sha1').update(s).digest('hex');
const at = (area: string, h: string) => `${area}/${h.slice(0, 2)}/${h.slice(2, 4)}/${h}`;

describe('parseRecord', () => {
  const h = sha1('x');
  it.each([
    [`f 5 640 33 1001 1700000000.1234567890 1 4711 filedir/${h.slice(0, 2)}/${h.slice(2, 4)}/${h}`, 'blob'],
    [`l 13 777 0 0 1700000000.0000000000 1 4712 trashdir/00/00/${h}`, 'other'],
    // A directory name with spaces: the path is everything after the eighth field.
    [`f 5 644 0 0 1.5 2 4713 filedir/a b/c d/${h}`, 'blob'],
  ])('%s → %s', (record, kind) => {
    const r = parseRecord(record);
    expect(r.kind).toBe(kind);
    expect(r.path.endsWith(h)).toBe(true);
  });
  it('a blob-shaped file whose path holds a tab or a line break is not a blob (no list line can hold it)', () => {
    for (const dir of ['a\tb/cd', 'a\nb/cd', 'ab/c\nd'])
      expect(parseRecord(`f 5 640 33 1001 1.5 1 4714 filedir/${dir}/${h}`)).toEqual({
        kind: 'other',
        path: `filedir/${dir}/${h}`,
        reason: 'a path a list line cannot hold',
      });
  });
  it('reads a time before 1970 as find prints it (seconds, then the nanoseconds after them)', () => {
    expect(parseRecord(`f 5 640 33 1001 -2.7500000000 1 4715 filedir/aa/bb/${h}`)).toMatchObject({
      mtimeMs: -1_250,
    });
  });
  it('reads size, octal mode, owner, mtime in ms, links and inode', () => {
    expect(
      parseRecord(`f 5 640 33 1001 1700000000.1234567890 2 18446744073709551557 filedir/aa/bb/${h}`),
    ).toEqual({
      kind: 'blob',
      area: 'filedir',
      path: `filedir/aa/bb/${h}`,
      sha1: h,
      size: 5,
      mode: 0o640,
      uid: 33,
      gid: 1001,
      mtimeMs: 1_700_000_000_123,
      nlink: 2,
      ino: '18446744073709551557',
    });
  });
});

describe('listBlobs', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'store-list-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('lists blobs of filedir/ and trashdir/ with sizes, strays apart, without reading any content', async () => {
    const blobs = ['a', 'bb', 'ccc'].map((c) => ({ h: sha1(c), size: c.length }));
    for (const { h, size } of blobs) {
      await mkdir(join(root, at('filedir', h), '..'), { recursive: true });
      await writeFile(join(root, at('filedir', h)), 'z'.repeat(size), { mode: 0o604 });
    }
    const trashed = sha1('deleted');
    await mkdir(join(root, at('trashdir', trashed), '..'), { recursive: true });
    await writeFile(join(root, at('trashdir', trashed)), 'deleted');
    await writeFile(join(root, 'filedir/warning.txt'), 'keep out');
    // A symlink with a blob's name is not a blob: it is never followed, the tarball keeps it as a link.
    const link = at('filedir', sha1('link'));
    await mkdir(join(root, link, '..'), { recursive: true });
    await symlink('/etc/hostname', join(root, link));
    await writeFile(join(root, 'moodle-cron.log'), 'not under filedir: not listed');

    const seen: Listed[] = [];
    for await (const e of listBlobs(root)) seen.push(e);
    const got = seen
      .map((e) =>
        e.kind === 'blob'
          ? `${e.area} ${e.path} ${e.size} ${e.sha1 === e.path.slice(-40)}`
          : `other ${e.path} ${e.reason}`,
      )
      .sort();
    expect(got).toEqual(
      [
        ...blobs.map(({ h, size }) => `filedir ${at('filedir', h)} ${size} true`),
        `trashdir ${at('trashdir', trashed)} 7 true`,
        // Not shaped like a blob (filedir/warning.txt): not listed at all, the tarball keeps it.
        `other ${link} not a regular file`,
      ].sort(),
    );
    const first = seen.find((e) => e.kind === 'blob' && e.sha1 === blobs[0]?.h);
    expect(first?.kind === 'blob' && first.mode).toBe(0o604);
  });

  it('walks the areas in parts at once and lists exactly what one find of the whole areas lists', async () => {
    const many = await mkdtemp(join(tmpdir(), 'store-list-many-'));
    try {
      // 300 blobs over ~250 first-level directories of both areas, and a stray file among them.
      for (let i = 0; i < 300; i++) {
        const h = sha1(`blob ${i}`);
        const path = at(i % 10 === 0 ? 'trashdir' : 'filedir', h);
        await mkdir(join(many, path, '..'), { recursive: true });
        await writeFile(join(many, path), `blob ${i}`);
      }
      await writeFile(join(many, 'filedir/stray.txt'), 'first level: not listed');
      const one = execFileSync(
        'find',
        ['filedir', 'trashdir', '-mindepth', '3', '-maxdepth', '3', '-printf', '%p\\n'],
        { cwd: many, encoding: 'utf8' },
      )
        .trim()
        .split('\n')
        .sort();
      const seen: string[] = [];
      for await (const e of listBlobs(many)) seen.push(e.path);
      expect(one).toHaveLength(300);
      expect(seen.sort()).toEqual(one);
    } finally {
      await rm(many, { recursive: true, force: true });
    }
  });

  it('a dataroot without trashdir/ (or filedir/) lists what there is', async () => {
    const empty = await mkdtemp(join(tmpdir(), 'store-list-empty-'));
    const seen: Listed[] = [];
    for await (const e of listBlobs(empty)) seen.push(e);
    expect(seen).toEqual([]);
    await rm(empty, { recursive: true });
  });
});

describe('scanLeaves', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'store-scan-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('reads every leaf directory with its ctime, owner, mode and mtime; odd names and stray files apart', async () => {
    await mkdir(join(root, 'filedir/ab/cd'), { recursive: true });
    await chmod(join(root, 'filedir/ab/cd'), 0o750);
    await utimes(join(root, 'filedir/ab/cd'), 1_700_000_000.25, 1_700_000_000.25);
    await mkdir(join(root, 'trashdir/12/34'), { recursive: true });
    // 999,999 ns into a ms: still that ms (as a double, x.123999999 s rounds up to .124).
    execFileSync('touch', ['-m', '-d', '@1700000000.123999999', join(root, 'trashdir/12/34')]);
    await mkdir(join(root, 'filedir/ab/Not hex'), { recursive: true }); // not Moodle's, kept by its name
    await writeFile(join(root, 'filedir/ab/stray.txt'), "a file at a leaf directory's depth");
    await writeFile(join(root, 'filedir/top.txt'), 'one level up: not a leaf');

    const scan = await scanLeaves(root, { attrs: true });
    expect(scan.strays).toBe(true);
    expect(new Set(scan.stamps.keys())).toEqual(
      new Set(['filedir/ab/cd', 'trashdir/12/34', 'filedir/ab/Not hex']),
    );
    // Whole ms, rounded down from the nanoseconds (a double's rounding would sometimes round up).
    const ms = (ns: bigint) => Number(ns / 1_000_000n);
    for (const [path, ctimeMs, attrs] of scan.stamps.entries()) {
      const st = await stat(join(root, path), { bigint: true });
      expect(ctimeMs).toBe(ms(st.ctimeNs));
      const [mode, uid, gid] = [st.mode & 0o7777n, st.uid, st.gid].map(Number);
      expect(attrs).toEqual({ mode, uid, gid, mtimeMs: ms(st.mtimeNs) });
    }
    expect(scan.stamps.entries().next().value?.[2]).toMatchObject({
      mode: 0o750,
      mtimeMs: 1_700_000_000_250,
    });

    expect([...scan.stamps.entries()].find(([p]) => p === 'trashdir/12/34')?.[2]?.mtimeMs).toBe(
      1_700_000_000_123,
    );
    const bare = await scanLeaves(root);
    expect(bare.stamps.get('filedir/ab/cd')).toBe(scan.stamps.get('filedir/ab/cd'));
    expect([...bare.stamps.entries()][0]?.[2]).toBeUndefined();
  });

  it('a leaf directory whose name holds a line break or a tab is kept without attributes, and counts as a stray', async () => {
    const odd = await mkdtemp(join(tmpdir(), 'store-scan-odd-'));
    await mkdir(join(odd, 'filedir/ab/cd'), { recursive: true });
    await mkdir(join(odd, 'filedir/a\nb/cd'), { recursive: true });
    await mkdir(join(odd, 'trashdir/ab/c\td'), { recursive: true });
    const scan = await scanLeaves(odd, { attrs: true });
    expect(scan.strays).toBe(true);
    const attrs = new Map([...scan.stamps.entries()].map(([p, , a]) => [p, a]));
    expect([...attrs.keys()].sort()).toEqual(['filedir/a\nb/cd', 'filedir/ab/cd', 'trashdir/ab/c\td']);
    expect(attrs.get('filedir/ab/cd')).toBeDefined();
    expect(attrs.get('filedir/a\nb/cd')).toBeUndefined();
    expect(attrs.get('trashdir/ab/c\td')).toBeUndefined();
    expect(scan.undecodable).toBeUndefined();
    // A name that is not UTF-8 reads as U+FFFD: it could not be given to find again, so the scan says so.
    await mkdir(
      Buffer.concat([Buffer.from(`${odd}/filedir/`), Buffer.from([0xff, 0x41]), Buffer.from('/cd')]),
      {
        recursive: true,
      },
    );
    const again = await scanLeaves(odd, { attrs: true });
    expect(again.undecodable).toBe('filedir/\uFFFDA/cd');
    await rm(odd, { recursive: true });
  });

  it('a dataroot without blob areas has no leaf directories and no strays', async () => {
    const empty = await mkdtemp(join(tmpdir(), 'store-scan-empty-'));
    expect(await scanLeaves(empty)).toMatchObject({ strays: false });
    expect((await scanLeaves(empty)).stamps.size).toBe(0);
    await rm(empty, { recursive: true });
  });
});

describe('pack tar headers', () => {
  it('GNU tar reads them: name, size, mode, numeric owner, mtime', () => {
    const h = sha1('hello');
    const data = Buffer.from('hello');
    const tar = Buffer.concat([
      fileHeader({
        name: at('filedir', h),
        size: 5,
        mode: 0o100640,
        uid: 33,
        gid: 1001,
        mtimeMs: 1_700_000_000_000,
      }),
      data,
      Buffer.alloc(512 - 5),
      Buffer.alloc(1024),
    ]);
    const out = execFileSync('tar', ['-tv', '--numeric-owner', '--full-time', '-f', '-'], {
      input: tar,
      encoding: 'utf8',
      env: { TZ: 'UTC' },
    });
    expect(out.trim().replace(/ +/g, ' ')).toBe(
      `-rw-r----- 33/1001 5 2023-11-14 22:13:20 ${at('filedir', h)}`,
    );
  });

  it('a size past 8 GiB is written in base-256, as GNU tar reads it', () => {
    const hdr = fileHeader({
      name: at('filedir', sha1('x')),
      size: 2 ** 34 + 3,
      mode: 0o644,
      uid: 0,
      gid: 0,
      mtimeMs: 0,
    });
    expect(hdr[124]).toBe(0x80);
    // Only the header: tar lists the entry, then finds the data missing (exit 2).
    const r = spawnSync('tar', ['-tv', '-f', '-'], { input: hdr, encoding: 'utf8' });
    expect(r.stdout).toContain(` ${2 ** 34 + 3} `);
  });
});

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  LOCAL_SINCE_MARGIN_MS,
  PreListing,
  relist,
  SINCE_MARGIN_MS,
  scanWindow,
  sinceMarginFor,
  windowTarArgs,
} from '../../../src/backup/blob-window.js';
import { formatBlobLine } from '../../../src/store/blob-list.js';
import { LeafSet, LeafTable, leafOf } from '../../../src/store/leaf-table.js';
import type { ListedBlob } from '../../../src/store/listing.js';

const sha1 = (s: string) => createHash('sha1').update(s).digest('hex');
const leaf = (h: string) => `filedir/${h.slice(0, 2)}/${h.slice(2, 4)}`;

/** Writes a blob (content `s`, under its SHA-1) into the dataroot; returns its path. */
async function put(root: string, s: string): Promise<string> {
  const h = sha1(s);
  await mkdir(join(root, leaf(h)), { recursive: true });
  await writeFile(join(root, leaf(h), h), s);
  return `${leaf(h)}/${h}`;
}

describe('the stop window lists only the leaf directories that changed', () => {
  let root: string;
  let spool: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'window-'));
    spool = await mkdtemp(join(tmpdir(), 'window-spool-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
    await rm(spool, { recursive: true, force: true });
  });

  it('drops changed and vanished directories, lists the changed ones again, and tar walks only the mixed one', async () => {
    const touched = await put(root, 'one');
    const mixed = await put(root, 'two');
    await put(root, 'three');
    await writeFile(join(root, `${mixed}.tmp`), 'half'); // Moodle writing a file: not a blob
    await sleep(50); // the directories' ctimes are now before the listing (no margin in this test)
    const pre = new PreListing(join(spool, 'listed'), 0);
    await pre.stamp(root);
    for await (const l of pre.blobs(root)) await pre.record(l, { status: 'known', sha1: l.sha1 });
    await pre.finish();
    expect(pre.count).toBe(3); // the mixed directory's blob too
    expect([...pre.mixed]).toEqual([leaf(sha1('two'))]);

    // Between the first listing and the window: a file added beside one, a directory gone, a new one.
    await sleep(20);
    await writeFile(join(root, leaf(sha1('one')), sha1('four')), 'four'); // wrong dir, same shape: a blob
    await rm(join(root, leaf(sha1('three'))), { recursive: true });
    const fresh = await put(root, 'five');

    const scan = await scanWindow(root, pre);
    expect([...scan.changed].sort()).toEqual([leaf(sha1('one')), leaf(sha1('five'))].sort());
    expect(new Set(scan.stale)).toEqual(
      new Set([leaf(sha1('one')), leaf(sha1('five')), leaf(sha1('three'))]),
    );
    expect([...scan.stamps.keys()].sort()).toEqual(
      [leaf(sha1('one')), leaf(sha1('two')), leaf(sha1('five'))].sort(),
    );
    const found = await relist(root, scan.changed, pre.mixed, join(spool, 'relisted'));
    const relisted: ListedBlob[] = [];
    for await (const b of found.blobs()) relisted.push(b);
    expect(found.count).toBe(3);
    expect(relisted.find((b) => b.path === touched)).toMatchObject({
      kind: 'blob',
      sha1: sha1('one'),
      size: 3,
      nlink: 1,
    });
    expect(relisted.map((b) => b.path).sort()).toEqual(
      [touched, `${leaf(sha1('one'))}/${sha1('four')}`, fresh].sort(),
    );
    // The first listing's lines of the unchanged directories only: not the changed one, not the gone one.
    let text = '';
    for await (const c of pre.replay(scan.stale)) text += c.text.toString();
    expect(
      text
        .trim()
        .split('\n')
        .map((l) => l.split('\t').at(-1)),
    ).toEqual([mixed]);

    // tar: the clean leaf directories left out whole; the mixed one walked, its blob left out by path.
    const args = await windowTarArgs(root, scan, pre.mixed, join(spool, 'dirs'));
    const members = execFileSync('sh', ['-c', 'tar -c "$@" . | tar -t', 'tar', ...args], { cwd: root })
      .toString()
      .trim()
      .split('\n')
      .sort();
    const tops = [sha1('one'), sha1('two'), sha1('three'), sha1('five')].map(
      (h) => `./filedir/${h.slice(0, 2)}/`,
    );
    const want = new Set(['./', './filedir/', ...tops, `./${leaf(sha1('two'))}/`, `./${mixed}.tmp`]);
    expect(members).toEqual([...want].sort());
  });

  it('racy directories: one changed within the margin before the listing is listed again, an older one is not', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'window-racy-'));
    try {
      const old = await put(dir, 'changed well before');
      await sleep(LOCAL_SINCE_MARGIN_MS * 4);
      const recent = await put(dir, 'changed just before');
      const pre = new PreListing(join(spool, 'racy'), LOCAL_SINCE_MARGIN_MS);
      await pre.stamp(dir);
      for await (const l of pre.blobs(dir)) await pre.record(l, { status: 'known', sha1: l.sha1 });
      await pre.finish();
      // Nothing changed since the listing: only the directory changed inside the margin is looked at again,
      // as a change in the same clock tick as its reading would not show in its ctime.
      const scan = await scanWindow(dir, pre);
      expect([...scan.changed]).toEqual([leafOf(recent)]);
      expect([...scan.changed]).not.toContain(leafOf(old));
      expect(scan.sinceMs).toBeGreaterThan(Date.now() - LOCAL_SINCE_MARGIN_MS - 1000);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("the margin: small on this kernel's own file systems, 2 s on any other or when statfs cannot tell", async () => {
    expect(await sinceMarginFor(root)).toBe(LOCAL_SINCE_MARGIN_MS); // the test machines' tmp: ext4 or tmpfs
    expect(await sinceMarginFor(join(root, 'no', 'such', 'dir'))).toBe(SINCE_MARGIN_MS);
    // /proc is not a file system whose times are its files' own: the safe margin.
    expect(await sinceMarginFor('/proc')).toBe(SINCE_MARGIN_MS);
  });

  it('a backup after one that changed nothing copies its lines whole, with its counts', async () => {
    const here = await mkdtemp(join(tmpdir(), 'window-since-'));
    try {
      await put(here, 'alpha');
      await put(here, 'beta');
      await sleep(50);
      const first = new PreListing(join(spool, 'first'), 0);
      await first.stamp(here);
      for await (const l of first.blobs(here)) await first.record(l, { status: 'known', sha1: l.sha1 });
      await first.finish();
      const prev = {
        snapshot: 's1',
        sinceMs: first.sinceMs,
        stamps: LeafTable.from(first.stamps),
        mixed: [],
        linesFile: join(spool, 'first'),
        totals: { count: first.count, bytes: first.bytes, mismatches: [] },
      };
      const next = new PreListing(join(spool, 'second'), 0);
      const relisted: string[] = [];
      for await (const l of next.since(here, prev)) relisted.push(l.path);
      await next.finish();
      expect(relisted).toEqual([]);
      expect(next).toMatchObject({ count: 2, bytes: 9, reused: 2, changedDirs: 0 });
      expect(await readFile(join(spool, 'second'), 'utf8')).toBe(
        await readFile(join(spool, 'first'), 'utf8'),
      );
    } finally {
      await rm(here, { recursive: true, force: true });
    }
  });

  it('a blob-shaped symlink or a hard link to a non-blob file: tar walks that directory alone, keeps them and leaves its plain blobs out', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'window-odd-'));
    try {
      const plain = await put(dir, 'six');
      const clean = await put(dir, 'eight');
      const linked = await put(dir, 'nine');
      await writeFile(join(dir, 'outside-the-areas'), 'nine');
      const pre = new PreListing(join(spool, 'listed2'), 0);
      await pre.stamp(dir);
      for await (const l of pre.blobs(dir)) await pre.record(l, { status: 'known', sha1: l.sha1 });
      await pre.finish();
      expect(pre.count).toBe(3);
      await sleep(20);
      // Inside the window: a symlink beside a plain blob, and a blob linked to a file outside the areas.
      const symlink = `${leaf(sha1('six'))}/${sha1('seven')}`;
      execFileSync('ln', ['-s', plain.split('/').at(-1) as string, join(dir, symlink)]);
      await rm(join(dir, 'outside-the-areas'));
      execFileSync('ln', [join(dir, linked), join(dir, 'outside-the-areas')]);
      await writeFile(join(dir, leafOf(linked), 'touched'), ''); // its directory changed too
      await rm(join(dir, leafOf(linked), 'touched'));
      const scan = await scanWindow(dir, pre);
      const found = await relist(dir, scan.changed, pre.mixed, join(spool, 'relisted2'));
      const relisted: string[] = [];
      for await (const b of found.blobs()) relisted.push(b.path);
      expect(relisted).toEqual([plain]);
      expect([...pre.mixed].sort()).toEqual([leafOf(plain), leafOf(linked)].sort());
      const args = await windowTarArgs(dir, scan, pre.mixed, join(spool, 'dirs2'));
      const members = execFileSync('sh', ['-c', 'tar -c "$@" . | tar -t', 'tar', ...args], { cwd: dir })
        .toString()
        .trim()
        .split('\n');
      expect(members).toContain(`./${symlink}`);
      expect(members).toContain(`./${linked}`);
      expect(members).toContain('./outside-the-areas');
      expect(members).not.toContain(`./${plain}`);
      expect(members).not.toContain(`./${leafOf(clean)}/`);
      expect(members.filter((m) => m.startsWith(`./${leafOf(clean)}`))).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('replaying the first listing', () => {
  it('drops the lines of the given directories across chunk boundaries, with counts, bytes and mismatches as parsed', async () => {
    const spool = await mkdtemp(join(tmpdir(), 'window-replay-'));
    try {
      const pre = new PreListing(join(spool, 'listed'), 0);
      const lines: { line: string; leaf: string; size: number; mismatch?: string }[] = [];
      // ~1.6 MB of lines: more than one chunk. Every 1000th blob's content is not its name.
      for (let i = 0; i < 15_000; i++) {
        const name = sha1(`r${i}`);
        const leafDir = i % 4999 === 7 ? 'filedir/odd/dir' : leaf(name);
        const path = `${leafDir}/${name}`;
        const l = {
          kind: 'blob' as const,
          area: 'filedir' as const,
          path,
          sha1: name,
          size: i * 3,
          mode: 0o640,
          uid: 1,
          gid: 2,
          mtimeMs: 1000 + i,
          nlink: 1,
          ino: String(i),
        };
        const actual = i % 1000 === 0 ? sha1(`other${i}`) : name;
        await pre.record(
          l,
          actual === name
            ? { status: 'known', sha1: name }
            : { status: 'mismatch', sha1: actual, claimed: name, actual, stored: true },
        );
        lines.push({
          line: formatBlobLine({ ...l, sha1: actual }),
          leaf: leafDir,
          size: l.size,
          ...(actual !== name ? { mismatch: actual } : {}),
        });
      }
      await pre.finish();
      const drop = new LeafSet();
      for (const x of lines.filter((_, i) => i % 3 === 0)) drop.add(x.leaf);
      drop.add('filedir/odd/dir');
      const kept = lines.filter((x) => !drop.has(x.leaf));
      const chunks = [];
      for await (const c of pre.replay(drop)) chunks.push(c);
      expect(chunks.length).toBeGreaterThan(0);
      expect(Buffer.concat(chunks.map((c) => c.text)).toString()).toBe(kept.map((x) => x.line).join(''));
      expect(chunks.reduce((n, c) => n + c.count, 0)).toBe(kept.length);
      expect(chunks.reduce((n, c) => n + c.bytes, 0)).toBe(kept.reduce((n, x) => n + x.size, 0));
      const mismatches = chunks.flatMap((c) => c.mismatches);
      expect(mismatches.map((m) => m.actual)).toEqual(kept.filter((x) => x.mismatch).map((x) => x.mismatch));
      expect(mismatches.every((m) => m.path.endsWith(`/${m.claimed}`) && m.claimed !== m.actual)).toBe(true);
      // Nothing dropped: the file whole.
      let whole = '';
      for await (const c of pre.replay()) whole += c.text.toString();
      expect(whole).toBe(lines.map((x) => x.line).join(''));
    } finally {
      await rm(spool, { recursive: true, force: true });
    }
  });
});

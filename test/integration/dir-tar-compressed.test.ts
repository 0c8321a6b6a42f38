import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { link, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PassThrough } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CodecImpl, getCodec } from '../../src/archive/codec.js';
import { type StreamResult, streamVolume } from '../../src/backup/stream.js';
import { MOODLE_DATAROOT_EXCLUDES } from '../../src/moodle/excludes.js';
import type { VolumeTarget } from '../../src/stack/discover.js';
import { LocalBackend } from '../../src/storage/local.js';
import { tarReadOptions } from '../../src/volume/dir-tar.js';
import { readDirTarCompressed } from '../../src/volume/dir-tar-compressed.js';
import { docker } from '../harness/docker.js';
import { bytesWritten, childrenOf, waitForChild } from '../harness/procs.js';

/**
 * The fast `mount` read path (GNU tar piped straight into zstd, volume/dir-tar-compressed.ts) against what
 * a user can check: the stored archive decompresses to exactly the tar GNU tar writes, rawBytes is its
 * length, excludes leave out and count what the Node filter (TarExclude) does, and a tar or zstd that dies
 * mid-read fails the volume instead of passing a truncated archive off as complete. Real tar, zstd and disk.
 */
const VOLUME: VolumeTarget = { name: 'mbst-fast-path', short: 'data', mountedBy: [] };
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const untar = (archive: Buffer, codec: 'zstd' | 'gzip') =>
  execFileSync(codec === 'zstd' ? 'zstd' : 'gzip', ['-d', '-c'], { input: archive, maxBuffer: 256 << 20 });
/** The tar goes through a file: tar stops reading at the end-of-archive marker, so feeding stdin can EPIPE. */
async function tarFile(tar: Buffer): Promise<string> {
  const file = join(root, `tar-${Math.random().toString(36).slice(2)}`);
  await writeFile(file, tar);
  return file;
}
const listing = async (tar: Buffer) =>
  execFileSync('tar', ['-tf', await tarFile(tar)], { maxBuffer: 64 << 20 })
    .toString()
    .split('\n')
    .filter(Boolean)
    .sort();

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'mbst-fast-path-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Backs `dir` up with `codec` into a file; the result and the stored bytes. */
async function backup(
  dir: string,
  codec: 'zstd' | 'gzip',
  rules: string[] = [],
  gate?: Promise<void>,
): Promise<StreamResult & { stored: Buffer }> {
  const file = join(root, `out-${Math.random().toString(36).slice(2)}`);
  const sink = async (s: PassThrough) => {
    await gate;
    await pipeline(s, createWriteStream(file));
  };
  const r = await streamVolume(
    docker(),
    VOLUME,
    'unused',
    { codec: getCodec(codec), after: () => [], plain: true },
    { sink },
    undefined,
    undefined,
    { rules, source: 'config' },
    dir,
  );
  return { ...r, stored: await readFile(file) };
}

/** A Moodle dataroot-like tree: caches, sessions, a cron log, nested caches, dotfiles, names with `?`. */
async function moodleTree(dir: string): Promise<void> {
  for (const d of [
    'cache/a/b',
    'localcache/x',
    'temp/t',
    'filedir/ab/cd',
    'sessions',
    'cachex',
    'lang/cache/y',
  ])
    await mkdir(join(dir, d), { recursive: true });
  await writeFile(join(dir, 'cache/a/b/c.php'), 'x'.repeat(3000));
  await writeFile(join(dir, 'cache/.hidden'), 'h'.repeat(10));
  await writeFile(join(dir, 'localcache/x/y'), 'y');
  await writeFile(join(dir, 'temp/t/z'), 'z'.repeat(700));
  await writeFile(join(dir, 'filedir/ab/cd/abcd'), randomBytes(200_000));
  await link(join(dir, 'filedir/ab/cd/abcd'), join(dir, 'filedir/trash-link'));
  await writeFile(join(dir, 'sessions/sess_1'), 's');
  await writeFile(join(dir, 'cachex/keep'), 'k');
  await writeFile(join(dir, 'moodle-cron.log'), 'log');
  await writeFile(join(dir, 'moodle-cron.log.1'), 'old log');
  await writeFile(join(dir, 'lang/cache/y/z'), 'nested');
  await writeFile(join(dir, 'we?rd'), 'question mark');
  await writeFile(join(dir, 'weXrd'), 'no question mark');
  await writeFile(join(dir, 'br[a]ck\\et'), 'brackets');
  await writeFile(join(dir, 'brack\\et'), 'no brackets');
}

describe('mount read path, tar piped into zstd', () => {
  it('stores exactly the tar GNU tar writes; rawBytes is its length, end blocks and padding included', async () => {
    const dir = join(root, 'plain');
    await mkdir(dir);
    await moodleTree(dir);
    const r = await backup(dir, 'zstd');
    expect(r.viaNode).toBe(false);
    const tar = untar(r.stored, 'zstd');
    const direct = execFileSync('tar', [...tarReadOptions(dir), '-f', '-', '.'], { maxBuffer: 64 << 20 });
    expect(r.rawBytes).toBe(tar.length);
    expect(sha(tar)).toBe(sha(direct));
    expect(r.storedBytes).toBe(r.stored.length);
    expect(r.sha256).toBe(sha(r.stored));
  });

  it('excludes: the same entries left out and the same counts as the Node filter on the gzip path', async () => {
    const dir = join(root, 'excl');
    await mkdir(dir);
    await moodleTree(dir);
    const rules = [...MOODLE_DATAROOT_EXCLUDES, '*/cache/', 'we?rd', 'br[a]ck\\et'];
    const fast = await backup(dir, 'zstd', rules);
    const node = await backup(dir, 'gzip', rules);
    expect([fast.viaNode, node.viaNode]).toEqual([false, true]);
    const kept = await listing(untar(fast.stored, 'zstd'));
    expect(kept).toEqual(await listing(untar(node.stored, 'gzip')));
    // Directory entries stay (restored empty), their contents and the named files go; `?` is literal.
    expect(kept).toEqual(
      expect.arrayContaining([
        './cache/',
        './localcache/',
        './lang/cache/',
        './weXrd',
        './moodle-cron.log.1',
      ]),
    );
    for (const gone of ['./cache/a/', './cache/.hidden', './lang/cache/y/z', './moodle-cron.log', './we?rd'])
      expect(kept).not.toContain(gone);
    expect({ entries: fast.excludedEntries, bytes: fast.excludedBytes }).toEqual({
      entries: node.excludedEntries,
      bytes: node.excludedBytes,
    });
    // cache: a, a/b, a/b/c.php, .hidden; localcache: x, x/y; temp: t, t/z; sessions/sess_1; the cron log;
    // lang/cache: y, y/z; we?rd; br[a]ck\et.
    expect(fast.excludedEntries).toBe(14);
    expect(fast.excludedBytes).toBe(3000 + 10 + 1 + 700 + 1 + 3 + 6 + 13 + 8);
    expect(kept.filter((k) => k.startsWith('./br'))).toEqual(['./brack\\\\et']);
  });

  it('a hard link outside the excluded paths keeps its data when its other name is excluded', async () => {
    const dir = join(root, 'links');
    await mkdir(join(dir, 'cache'), { recursive: true });
    await writeFile(join(dir, 'cache/linked'), 'shared body');
    await link(join(dir, 'cache/linked'), join(dir, 'outside'));
    const r = await backup(dir, 'zstd', ['cache/']);
    const out = join(root, 'links-restored');
    await mkdir(out);
    execFileSync('tar', ['-C', out, '-xf', await tarFile(untar(r.stored, 'zstd'))]);
    expect(await readFile(join(out, 'outside'), 'utf8')).toBe('shared body');
    expect({ entries: r.excludedEntries, bytes: r.excludedBytes }).toEqual({ entries: 1, bytes: 11 });
  });

  it("progress: tar's checkpoints report the raw bytes written so far, every 10 MiB", async () => {
    const dir = join(root, 'progress');
    await mkdir(dir);
    for (let i = 0; i < 3; i++) await writeFile(join(dir, `blob-${i}`), randomBytes(12 << 20));
    const seen: number[] = [];
    const zstd = getCodec('zstd').command?.(3);
    if (!zstd) throw new Error('the zstd binary is needed for this test');
    const tar = readDirTarCompressed(dir, zstd, { onRawBytes: (n) => seen.push(n) });
    let stored = 0;
    for await (const chunk of tar.stream) stored += (chunk as Buffer).length;
    expect(stored).toBeGreaterThan(36 << 20);
    expect(seen).toEqual([1, 2, 3].map((k) => k * 1024 * 10240));
    expect(tar.rawBytes()).toBeGreaterThan(seen.at(-1) ?? 0);
  });

  it("progress: tar's verbose listing counts the regular files archived, the archive is unchanged", async () => {
    const dir = join(root, 'count');
    await moodleTree(dir);
    // A name with a newline (tar escapes it: still one listing line) and a hard link (not a second file).
    await writeFile(join(dir, 'two\nlines'), 'x');
    await link(join(dir, 'two\nlines'), join(dir, 'hard'));
    const zstd = getCodec('zstd').command?.(3);
    if (!zstd) throw new Error('the zstd binary is needed for this test');
    let files = 0;
    const tar = readDirTarCompressed(dir, zstd, { onFile: () => files++ });
    const chunks: Buffer[] = [];
    for await (const chunk of tar.stream) chunks.push(chunk as Buffer);
    // What a user counts: the regular files GNU tar lists in the stored archive (hard links are type h).
    const listed = execFileSync('tar', ['-tvf', await tarFile(untar(Buffer.concat(chunks), 'zstd'))])
      .toString()
      .split('\n')
      .filter((l) => l.startsWith('-'));
    expect(listed.length).toBeGreaterThan(5);
    expect(files).toBe(listed.length);
    // Without the listing the same tar is written: -vv changes only stderr.
    const plain = readDirTarCompressed(dir, zstd);
    const again: Buffer[] = [];
    for await (const chunk of plain.stream) again.push(chunk as Buffer);
    expect(plain.rawBytes()).toBe(tar.rawBytes());
    expect(sha(untar(Buffer.concat(again), 'zstd'))).toBe(sha(untar(Buffer.concat(chunks), 'zstd')));
  });

  describe('a process dying mid-read fails the volume', () => {
    let big: string;
    beforeAll(async () => {
      big = join(root, 'big');
      await mkdir(big);
      // Incompressible, so zstd cannot run far ahead: the sink's closed gate stalls tar within a few MiB.
      for (let i = 0; i < 6; i++) await writeFile(join(big, `blob-${i}`), randomBytes(8 << 20));
    });

    async function killMidRead(victim: 'tar' | 'zstd'): Promise<unknown> {
      let open: () => void = () => {};
      const gate = new Promise<void>((r) => {
        open = r;
      });
      const running = backup(big, 'zstd', [], gate).then(
        () => null,
        (err: unknown) => err,
      );
      const tar = await waitForChild(
        process.pid,
        'tar -c',
        (p) => p.argv[0] === 'tar' && p.argv.includes(big),
      );
      const deadline = Date.now() + 20_000;
      while ((await bytesWritten(tar.pid)) < 1 << 20 && Date.now() < deadline) await sleep(10);
      expect(await bytesWritten(tar.pid)).toBeGreaterThanOrEqual(1 << 20);
      const target =
        victim === 'tar'
          ? tar
          : await waitForChild(process.pid, 'zstd', (p) => p.argv[0] === 'zstd' && p.argv.includes('-T0'));
      process.kill(target.pid, 'SIGKILL');
      open();
      const err = await running;
      // Nothing of the volume's read keeps running.
      expect(
        (await childrenOf(process.pid)).filter((p) => ['tar', 'zstd'].includes(p.argv[0] ?? '')),
      ).toEqual([]);
      return err;
    }

    it('tar killed: STORAGE_FAILED naming tar, although zstd then ends its frame cleanly', async () => {
      const err = await killMidRead('tar');
      expect(err).toMatchObject({ code: 'STORAGE_FAILED' });
      expect(String((err as Error).message)).toMatch(/tar exited with SIGKILL/);
    });

    it("zstd killed: STORAGE_FAILED naming zstd, not tar's broken pipe", async () => {
      const err = await killMidRead('zstd');
      expect(err).toMatchObject({ code: 'STORAGE_FAILED' });
      expect(String((err as Error).message)).toMatch(/zstd exited with SIGKILL/);
    });
  });
});

describe("mount read path, zstd writing the local target's file itself", () => {
  /** Backs `dir` up into a LocalBackend at `target` (a fresh root by default) through the direct path. */
  async function direct(dir: string, codec: CodecImpl = getCodec('zstd'), target?: string) {
    target ??= await mkdtemp(join(root, 'target-'));
    const backend = new LocalBackend(target);
    const r = await streamVolume(
      docker(),
      VOLUME,
      'unused',
      { codec, after: () => [], plain: true },
      {
        sink: async () => {
          throw new Error('the stream sink was used');
        },
        file: () => backend.createFile('snap/data.tar.zst'),
      },
      undefined,
      undefined,
      { rules: ['cache/'], source: 'config' },
      dir,
    );
    return { r, target, backend };
  }

  it('the same tar as GNU tar writes; published only by finish, with the sha256 and size of its bytes', async () => {
    const dir = join(root, 'direct');
    await moodleTree(dir);
    const { r, target, backend } = await direct(dir);
    expect(r.viaNode).toBe(false);
    if (!r.later) throw new Error('the direct path was not taken');
    // Read, not yet published: the temp file is not an object.
    expect(await backend.list('')).toEqual([]);
    const done = await r.later.finish();
    const stored = await readFile(join(target, 'snap/data.tar.zst'));
    expect(done).toEqual({ storedBytes: stored.length, sha256: sha(stored) });
    const tar = untar(stored, 'zstd');
    const plain = execFileSync('tar', [...tarReadOptions(dir), '--exclude=./cache/*', '-f', '-', '.'], {
      maxBuffer: 64 << 20,
    });
    expect(r.rawBytes).toBe(tar.length);
    expect(await listing(tar)).toEqual(await listing(plain));
    expect(r.excludedEntries).toBe(4);
    expect(await readdir(join(target, 'snap'))).toEqual(['data.tar.zst']);
  });

  it('a compressor that fails: STORAGE_FAILED naming it, nothing published, no temp file left', async () => {
    const dir = join(root, 'direct-fail');
    await moodleTree(dir);
    const failing: CodecImpl = {
      ...getCodec('zstd'),
      command: () => ({ cmd: 'sh', args: ['-c', 'head -c 1000 >/dev/null; echo broken >&2; exit 3'] }),
    };
    const target = await mkdtemp(join(root, 'target-'));
    const err = await direct(dir, failing, target).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: 'STORAGE_FAILED' });
    expect(String((err as Error).message)).toMatch(/sh exited with 3: broken/);
    expect(await readdir(target, { recursive: true })).toEqual([]);
  });

  it('discard after a later failure: nothing published, no temp file left', async () => {
    const dir = join(root, 'direct-discard');
    await moodleTree(dir);
    const { r, target } = await direct(dir);
    await r.later?.discard();
    expect(await readdir(target, { recursive: true })).toEqual([]);
  });
});

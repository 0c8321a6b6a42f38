import {
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  statfs,
  symlink,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { TarStats } from '../../../src/archive/tar-guard.js';
import { silentLogger } from '../../../src/observe/logger.js';
import { restoreFileVolume } from '../../../src/restore/mount.js';
import { RestoreProgress } from '../../../src/restore/progress.js';
import { StateStore } from '../../../src/stack/state.js';
import {
  holdsDatadir,
  OLD,
  prepareStaging,
  removeOld,
  removeTree,
  STAGING,
  type SwapPhase,
  settleSwap,
  swapIn,
  swapOut,
} from '../../../src/volume/swap.js';

/** Every file below `dir` with its content, dot entries included: what a user would compare. */
async function tree(dir: string, prefix = ''): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const rel = `${prefix}${e.name}`;
    if (e.isDirectory()) Object.assign(out, { [`${rel}/`]: '' }, await tree(join(dir, e.name), `${rel}/`));
    else out[rel] = await readFile(join(dir, e.name), 'utf8');
  }
  return out;
}

const OLD_TREE = { '.htaccess': 'old-dot', 'a.txt': 'old-a', 'filedir/': '', 'filedir/x': 'old-x' };
const NEW_TREE = { 'a.txt': 'new-a', 'b.txt': 'new-b', 'filedir/': '', 'filedir/y': 'new-y' };

async function write(dir: string, t: Record<string, string>): Promise<void> {
  for (const [p, body] of Object.entries(t)) {
    if (p.endsWith('/')) await mkdir(join(dir, p), { recursive: true });
    else await writeFile(join(dir, p), body);
  }
}

const made: string[] = [];
afterEach(async () => {
  for (const d of made.splice(0)) await rm(d, { recursive: true, force: true });
});

/** The old mount point's mtime, and the archive's `./` entry: both must end up on the mount point. */
const OLD_MTIME = 1_500_000_000;
const ROOT = { uid: 0, gid: 0, mode: 0o750, mtime: 1_000_000_000 };

/** A volume with old content and the new content fully staged, as restore leaves it before the swap. */
async function staged(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'mbst-swap-'));
  made.push(dir);
  await write(dir, OLD_TREE);
  await utimes(dir, OLD_MTIME, OLD_MTIME);
  await write(await prepareStaging(dir), NEW_TREE);
  return dir;
}

const mtime = async (dir: string) => Math.floor((await stat(dir)).mtimeMs / 1000);

/** Moves `n` top-level entries from one directory to another: a swap step interrupted after n renames. */
async function moveSome(from: string, to: string, n: number, skip: string[] = []): Promise<void> {
  const names = (await readdir(from))
    .filter((x) => !skip.includes(x))
    .sort()
    .slice(0, n);
  for (const x of names) await rename(join(from, x), join(to, x));
}

async function settleAndClean(dir: string, phase: SwapPhase, leafAreas?: string[]) {
  const r = await settleSwap({
    dir,
    phase,
    datadir: false,
    root: ROOT,
    before: { atime: OLD_MTIME, mtime: OLD_MTIME },
    ...(leafAreas ? { leafAreas } : {}),
  });
  await r.finish();
  // Whichever tree the volume holds, its mount point has that tree's mtime.
  expect(await mtime(dir)).toBe(r.state === 'untouched' ? OLD_MTIME : ROOT.mtime);
  return r.state;
}

describe('staged restore swap (volume/swap.ts) on a real directory', () => {
  it('swaps the staged tree in and keeps dotfiles; the old tree is set aside whole', async () => {
    const dir = await staged();
    await swapOut(dir);
    await swapIn(dir);
    expect(await tree(dir)).toEqual({
      ...NEW_TREE,
      [`${OLD}/`]: '',
      ...Object.fromEntries(Object.entries(OLD_TREE).map(([k, v]) => [`${OLD}/${k}`, v])),
    });
    await removeTree(join(dir, OLD));
    expect(await tree(dir)).toEqual(NEW_TREE);
  });

  it('settles a crash in every phase to exactly the old or exactly the new tree, nothing of ours left', async () => {
    // Interrupted while unpacking: old data in place.
    let dir = await staged();
    expect(await settleAndClean(dir, 'staging')).toBe('untouched');
    expect(await tree(dir)).toEqual(OLD_TREE);

    // Interrupted after 2 of the 3 old entries were moved out.
    dir = await staged();
    await mkdir(join(dir, OLD));
    await moveSome(dir, join(dir, OLD), 2, [STAGING, OLD]);
    expect(await settleAndClean(dir, 'swap-out')).toBe('untouched');
    expect(await tree(dir)).toEqual(OLD_TREE);

    // Interrupted after all old entries were out, before OLD existed in the record's view (re-run safe).
    dir = await staged();
    await swapOut(dir);
    expect(await settleAndClean(dir, 'swap-out')).toBe('untouched');
    expect(await tree(dir)).toEqual(OLD_TREE);

    // Interrupted after 1 of the 3 new entries was moved in: rolled forward (verified complete).
    dir = await staged();
    await swapOut(dir);
    await moveSome(join(dir, STAGING), dir, 1);
    expect(await settleAndClean(dir, 'swap-in')).toBe('restored');
    expect(await tree(dir)).toEqual(NEW_TREE);

    // Interrupted while deleting the old content.
    dir = await staged();
    await swapOut(dir);
    await swapIn(dir);
    expect(await settleAndClean(dir, 'cleanup')).toBe('restored');
    expect(await tree(dir)).toEqual(NEW_TREE);
  });

  it('settling applies the archive root attributes when it rolls forward', async () => {
    const dir = await staged();
    await swapOut(dir);
    const r = await settleSwap({
      dir,
      phase: 'swap-in',
      datadir: false,
      root: ROOT,
      before: { atime: OLD_MTIME, mtime: OLD_MTIME },
    });
    expect(r.state).toBe('restored');
    await r.finish();
    expect((await stat(dir)).mode & 0o7777).toBe(0o750);
    expect(await mtime(dir)).toBe(ROOT.mtime);
    expect(await tree(dir)).toEqual(NEW_TREE);
  });

  it("prepareStaging removes an earlier run's leftovers; holdsDatadir finds a datadir one level down", async () => {
    const dir = await staged();
    await writeFile(join(dir, STAGING, 'stale'), 'x');
    await mkdir(join(dir, OLD));
    await prepareStaging(dir);
    expect(await readdir(join(dir, STAGING))).toEqual([]);
    expect(await readdir(dir)).not.toContain(OLD);
    expect(await holdsDatadir(dir)).toBe(false);
    await mkdir(join(dir, 'data'));
    await writeFile(join(dir, 'data', 'aria_log_control'), '');
    expect(await holdsDatadir(dir)).toBe(true);
  });

  it('without room for a staged copy the volume is emptied and unpacked in place; with room, staged', async () => {
    const free = await statfs(tmpdir());
    const stats = (bytes: number): TarStats => ({
      entries: 5,
      files: 3,
      dirs: 2,
      symlinks: 0,
      hardlinks: 0,
      bytes,
      mariadbDatadir: false,
    });
    for (const room of [false, true]) {
      const dir = await mkdtemp(join(tmpdir(), 'mbst-swap-'));
      made.push(dir);
      await write(dir, OLD_TREE);
      const state = new StateStore(join(dir, '..', `${dir.split('/').pop()}-state`));
      made.push(state.dir);
      await state.write({ runId: 't', operation: 'restore', startedAt: '', pid: process.pid, quiesced: [] });
      const progress = new RestoreProgress(state, ['v']);
      const into: string[] = [];
      const r = await restoreFileVolume({
        docker: undefined as never,
        volume: 'v',
        image: '',
        dir,
        // What the volume's file system cannot hold beside the old data, or a few bytes.
        stats: stats(room ? 1024 : free.bavail * free.bsize + 2 ** 30),
        extract: async (to) => {
          into.push(to as string);
          await write(to as string, NEW_TREE);
          return undefined;
        },
        progress,
        name: 'v',
        log: silentLogger(),
      });
      expect(into).toEqual([room ? join(dir, STAGING) : dir]);
      if (r.deleteOldLater) await removeOld(r.deleteOldLater);
      expect(await tree(dir)).toEqual(NEW_TREE);
      expect((await state.read())?.volumes).toEqual({ v: 'restored' });
    }
  });
});

/** A dataroot whose blob area is swapped leaf directory by leaf directory (volume/leaf-swap.ts). */
const LIVE_LEAVES = {
  'config.php': 'old-config',
  'filedir/': '',
  'filedir/aa/': '',
  'filedir/aa/bb/': '',
  'filedir/aa/bb/kept': 'kept',
  'filedir/aa/cc/': '',
  'filedir/aa/cc/old': 'replaced',
  'filedir/dd/': '',
  'filedir/dd/ee/': '',
  'filedir/dd/ee/gone': 'a level the snapshot lacks',
  'filedir/stray': 'a file the snapshot lacks',
};
/** What STAGING holds: the other entries whole, of the area only the levels and the leaves that differ. */
const STAGED_LEAVES = {
  'config.php': 'new-config',
  'filedir/': '',
  'filedir/aa/': '',
  'filedir/aa/cc/': '',
  'filedir/aa/cc/new': 'new',
  'filedir/ff/': '',
  'filedir/ff/gg/': '',
  'filedir/ff/gg/added': 'a new level',
};
const LEAF_SWAP = { areas: ['filedir'], out: ['filedir/aa/cc', 'filedir/dd', 'filedir/stray'] };
const LEAVES_AFTER = {
  'config.php': 'new-config',
  'filedir/': '',
  'filedir/aa/': '',
  'filedir/aa/bb/': '',
  'filedir/aa/bb/kept': 'kept',
  'filedir/aa/cc/': '',
  'filedir/aa/cc/new': 'new',
  'filedir/ff/': '',
  'filedir/ff/gg/': '',
  'filedir/ff/gg/added': 'a new level',
};

describe('leaf by leaf swap of a blob area (volume/leaf-swap.ts)', () => {
  async function leafStaged(): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'mbst-leaves-'));
    made.push(dir);
    await write(dir, LIVE_LEAVES);
    await utimes(dir, OLD_MTIME, OLD_MTIME);
    const staging = await prepareStaging(dir);
    await write(staging, STAGED_LEAVES);
    await utimes(join(staging, 'filedir', 'aa'), 1_234_567_890, 1_234_567_890);
    return dir;
  }
  const settleLeaves = (dir: string, phase: SwapPhase) => settleAndClean(dir, phase, ['filedir']);

  it('swaps only the leaves named, keeps the rest in place (same inode), gives each level the staged attributes', async () => {
    const dir = await leafStaged();
    const keptIno = (await stat(join(dir, 'filedir/aa/bb/kept'))).ino;
    await swapOut(dir, LEAF_SWAP);
    await swapIn(dir, LEAF_SWAP.areas);
    await removeOld({ dir, root: ROOT });
    expect(await tree(dir)).toEqual(LEAVES_AFTER);
    expect((await stat(join(dir, 'filedir/aa/bb/kept'))).ino).toBe(keptIno);
    expect(await mtime(join(dir, 'filedir', 'aa'))).toBe(1_234_567_890);
  });

  it('settles a crash in every phase to exactly the old or exactly the new tree', async () => {
    // Interrupted after the top level and one of the area's entries went out: rolled back.
    let dir = await leafStaged();
    await swapOut(dir, { ...LEAF_SWAP, out: LEAF_SWAP.out.slice(0, 1) });
    expect(await settleLeaves(dir, 'swap-out')).toBe('untouched');
    expect(await tree(dir)).toEqual(LIVE_LEAVES);

    // Everything out: rolled back too.
    dir = await leafStaged();
    await swapOut(dir, LEAF_SWAP);
    expect(await settleLeaves(dir, 'swap-out')).toBe('untouched');
    expect(await tree(dir)).toEqual(LIVE_LEAVES);

    // Interrupted after one staged leaf came in: rolled forward.
    dir = await leafStaged();
    await swapOut(dir, LEAF_SWAP);
    await rename(join(dir, STAGING, 'filedir/aa/cc'), join(dir, 'filedir/aa/cc'));
    expect(await settleLeaves(dir, 'swap-in')).toBe('restored');
    expect(await tree(dir)).toEqual(LEAVES_AFTER);

    // Interrupted after the area was done, before the other entries came in: rolled forward.
    dir = await leafStaged();
    await swapOut(dir, LEAF_SWAP);
    await swapIn(dir, LEAF_SWAP.areas).catch(() => undefined);
    expect(await settleLeaves(dir, 'swap-in')).toBe('restored');
    expect(await tree(dir)).toEqual(LEAVES_AFTER);
  });
});

describe('removeTree (volume/swap.ts): several `find -delete` at once', () => {
  it('deletes every level, a directory too large to split and top-level files, never through a symlink', async () => {
    const root = await mkdtemp(join(tmpdir(), 'mbs-rmtree-'));
    made.push(root);
    const outside = join(root, 'outside');
    await mkdir(outside);
    await writeFile(join(outside, 'keep.txt'), 'kept');
    const doomed = join(root, 'doomed');
    // Moodle's filedir shape (ab/cd/<file>), more subtrees than deleters, files at every level.
    for (let i = 0; i < 40; i++) {
      const d = join(doomed, 'filedir', i.toString(16).padStart(2, '0'), 'cd');
      await mkdir(d, { recursive: true });
      await writeFile(join(d, `f${i}`), String(i));
    }
    await writeFile(join(doomed, 'top.txt'), 'top');
    await writeFile(join(doomed, 'filedir', 'level2.txt'), '2');
    // More entries than one `find` is handed by name: deleted whole.
    await mkdir(join(doomed, 'flat'));
    for (let i = 0; i < 1100; i++) await writeFile(join(doomed, 'flat', `f${i}`), '');
    // Symlinks to a directory outside, at the top and two levels down: the links go, the target stays.
    await symlink(outside, join(doomed, 'link'));
    await symlink(outside, join(doomed, 'filedir', 'link2'));
    await removeTree(doomed);
    expect(await readdir(root)).toEqual(['outside']);
    expect(await readFile(join(outside, 'keep.txt'), 'utf8')).toBe('kept');
    // A missing tree is fine.
    await removeTree(doomed);
  });
});

import {
  chmod,
  chown,
  lstat,
  mkdir,
  readdir,
  readFile,
  rename,
  rm,
  rmdir,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { secondsTime } from '../common/file-time.js';
import { eachInParallel } from '../common/parallel.js';

/**
 * A staged restore of a dataroot whose blob areas mostly hold the snapshot's files already (a bad upgrade, a
 * deleted course): the areas themselves stay where they are, and only the leaf directories that differ are
 * swapped, one rename out and one in each. Moving the whole area meant linking every kept file into the staging
 * copy first (~60 µs a link on this disk: ~10 s for 200,000 files) and deleting the old tree after.
 */
export interface LeafSwap {
  /** The blob areas swapped leaf by leaf (`filedir`, `trashdir`): directories both live and in STAGING. */
  areas: string[];
  /**
   * What leaves the live areas, relative to the volume: leaf directories (`filedir/ab/cd`) the snapshot
   * lacks or STAGING replaces, and whole `filedir/ab` levels (or anything else there) STAGING has no
   * directory for.
   */
  out: string[];
}

/** Renames in flight at once (libuv runs 4 at a time; the rest queue). */
const PARALLEL = 16;

/**
 * Moves `out` into `old` at the same relative paths, making the levels above as needed (root-only). Re-runnable:
 * an entry already moved is skipped.
 */
export async function leavesOut(dir: string, old: string, out: readonly string[]): Promise<void> {
  const made = new Map<string, Promise<unknown>>();
  const parent = (p: string) => {
    const d = dirname(join(old, p));
    const m = made.get(d) ?? mkdir(d, { recursive: true, mode: 0o700 });
    made.set(d, m);
    return m;
  };
  await eachInParallel(out.values(), PARALLEL, async (p) => {
    await parent(p);
    await rename(join(dir, p), join(old, p)).catch(async (err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT' || !(await exists(join(old, p)))) throw err;
    });
  });
}

/** Where leavesIn keeps the staged levels' attributes before it moves anything out of them. */
const LEVELS_FILE = '.mbs-leaf-levels.json';

interface LevelAttrs {
  uid: number;
  gid: number;
  mode: number;
  atimeMs: number;
  mtimeMs: number;
}

/**
 * Moves what STAGING holds of each area into the live area: an entry the live area lacks (or that is not a
 * directory on both sides) whole, else its children one by one, then the level's owner, mode and times
 * become the staged one's and the emptied staged level goes. Re-runnable: what was moved is no longer in
 * STAGING, and the staged levels' attributes are written down before the first move changes their times.
 */
export async function leavesIn(dir: string, staging: string, areas: readonly string[]): Promise<void> {
  const levels = await stagedLevels(staging, areas);
  for (const area of areas) {
    const from = join(staging, area);
    if (!(await exists(from))) continue; // done before an interruption
    const to = join(dir, area);
    for (const e of await readdir(from, { withFileTypes: true })) {
      const src = join(from, e.name);
      const dst = join(to, e.name);
      const live = await lstat(dst).catch(() => null);
      if (!live || !e.isDirectory() || !live.isDirectory()) {
        await rename(src, dst);
        continue;
      }
      await eachInParallel((await readdir(src)).values(), PARALLEL, (n) =>
        rename(join(src, n), join(dst, n)),
      );
      await setAttributes(dst, levels[`${area}/${e.name}`]);
      await rmdir(src);
    }
    await setAttributes(to, levels[area]);
    await rmdir(from);
  }
  await rm(join(staging, LEVELS_FILE), { force: true });
}

/** The staged areas' and their first levels' attributes, as written before the first move (or read now). */
async function stagedLevels(staging: string, areas: readonly string[]): Promise<Record<string, LevelAttrs>> {
  const file = join(staging, LEVELS_FILE);
  const written = await readFile(file, 'utf8').catch(() => null);
  if (written !== null) return JSON.parse(written) as Record<string, LevelAttrs>;
  const levels: Record<string, LevelAttrs> = {};
  const note = async (rel: string) => {
    const st = await lstat(join(staging, rel));
    levels[rel] = {
      uid: st.uid,
      gid: st.gid,
      mode: st.mode & 0o7777,
      atimeMs: st.atimeMs,
      mtimeMs: st.mtimeMs,
    };
  };
  for (const area of areas) {
    if (!(await exists(join(staging, area)))) continue;
    await note(area);
    for (const e of await readdir(join(staging, area), { withFileTypes: true }))
      if (e.isDirectory()) await note(`${area}/${e.name}`);
  }
  await writeFile(`${file}.tmp`, JSON.stringify(levels), { mode: 0o600 });
  await rename(`${file}.tmp`, file);
  return levels;
}

/**
 * Undoes leavesOut (a swap interrupted before anything came in): every entry under `old`'s areas goes back
 * where it was, then `old`'s emptied area levels go.
 */
export async function leavesBack(dir: string, old: string, areas: readonly string[]): Promise<void> {
  for (const area of areas) {
    const from = join(old, area);
    if (!(await exists(from))) continue;
    for (const e of await readdir(from, { withFileTypes: true })) {
      const src = join(from, e.name);
      const dst = join(dir, area, e.name);
      // Moved whole when the live area has no such entry now; else only a level made to hold leaves.
      if (!(await exists(dst))) {
        await rename(src, dst);
        continue;
      }
      await eachInParallel((await readdir(src)).values(), PARALLEL, (n) =>
        rename(join(src, n), join(dst, n)),
      );
    }
    await rm(from, { recursive: true });
  }
}

/** A level gets its staged owner (as root), mode and times; chown first, as it clears setgid. */
async function setAttributes(to: string, a: LevelAttrs | undefined): Promise<void> {
  if (!a) return;
  if (process.getuid?.() === 0) await chown(to, a.uid, a.gid);
  await chmod(to, a.mode);
  await utimes(to, secondsTime(a.atimeMs / 1000), secondsTime(a.mtimeMs / 1000));
}

async function exists(p: string): Promise<boolean> {
  return lstat(p).then(
    () => true,
    () => false,
  );
}

import { createHash } from 'node:crypto';
import {
  chownSync,
  closeSync,
  mkdirSync,
  openSync,
  readdirSync,
  renameSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { type Generated, type Kind, Source, skewed, writeFile } from './data.js';

const KB = 1024;
const OWNER: [number, number] = [1, 1];

/**
 * A Moodle dataroot whose filedir/ holds real blobs: each file is named by the SHA-1 of its content
 * (`filedir/ab/cd/<sha1>`), which is what the incremental backup keys on. The bench's older mix names files
 * by a counter, so the store would see none of them as blobs.
 */
export interface BlobDataroot {
  /** Where the generated blobs are, relative to the dataroot: what the 1% steps add to and take from. */
  paths: string[];
  gen: Generated;
}

/** `count` sizes skewed towards small files, scaled so that they add up to about `bytes`. */
function sizes(src: Source, count: number, bytes: number): number[] {
  const mean = bytes / count;
  const raw = Array.from({ length: count }, () => skewed(src, mean / 16, mean * 24));
  const scale = bytes / raw.reduce((a, b) => a + b, 0);
  return raw.map((s) => Math.max(1, Math.round(s * scale)));
}

/** Writes one file of `size` bytes, hashing it as it goes, and renames it to its SHA-1 under `area`. */
function writeBlob(src: Source, root: string, area: string, size: number, kind: Kind): string {
  const tmp = join(root, '.bench-tmp');
  const sha1 = createHash('sha1');
  const fd = openSync(tmp, 'w', 0o640);
  try {
    for (let left = size, i = 0; left > 0; i++) {
      const n = Math.min(left, kind === 'mixed' ? 256 * KB : 4 * 1024 * KB);
      const useText = kind === 'text' || (kind === 'mixed' && i % 2 === 0);
      const chunk = useText ? src.textSlice(n) : src.randomSlice(n);
      sha1.update(chunk);
      writeSync(fd, chunk);
      left -= n;
    }
  } finally {
    closeSync(fd);
  }
  chownSync(tmp, OWNER[0], OWNER[1]);
  const h = sha1.digest('hex');
  const rel = join(area, h.slice(0, 2), h.slice(2, 4), h);
  mkdirSync(join(root, area, h.slice(0, 2), h.slice(2, 4)), { recursive: true });
  renameSync(tmp, join(root, rel));
  return rel;
}

function kindOf(src: Source): Kind {
  const pick = src.next() % 100;
  return pick < 40 ? 'random' : pick < 75 ? 'text' : 'mixed';
}

/** Adds `count` new blobs of about `bytes` in all (fresh content: the random part differs every call). */
export function addBlobs(root: string, count: number, bytes: number, seed = 0): BlobDataroot {
  const src = new Source();
  for (let i = 0; i < seed; i++) src.next();
  const paths: string[] = [];
  let written = 0;
  for (const size of sizes(src, count, bytes)) {
    // About one blob in 200 sits in trashdir/ (deleted in Moodle, kept for its grace period).
    const area = src.next() % 200 === 0 ? 'trashdir' : 'filedir';
    paths.push(writeBlob(src, root, area, size, kindOf(src)));
    written += size;
  }
  return { paths, gen: { bytes: written, files: count } };
}

/**
 * A dataroot: `files` blobs of `bytes` in all, plus what else a dataroot holds and the backup keeps in its
 * tarball (lang/, muc/, .htaccess; ~200 KB) and the directories Moodle rebuilds (empty: they are excluded).
 */
export function genBlobDataroot(root: string, bytes: number, files: number): BlobDataroot {
  const r = addBlobs(root, files, bytes);
  const src = new Source();
  for (const d of ['cache', 'localcache', 'temp', 'sessions', 'lock', 'muc', 'lang/en_local'])
    mkdirSync(join(root, d), { recursive: true });
  let extra = 0;
  for (let i = 0; i < 40; i++) {
    const size = 1 * KB + (src.next() % (8 * KB));
    writeFile(src, join(root, 'lang', 'en_local', `s${i}.php`), size, 'text', OWNER);
    extra += size;
  }
  writeFile(src, join(root, 'muc', 'config.php'), 6 * KB, 'text', OWNER);
  writeFile(src, join(root, '.htaccess'), 64, 'text', OWNER);
  return { paths: r.paths, gen: { bytes: r.gen.bytes + extra + 6 * KB + 64, files: r.gen.files + 42 } };
}

/** Deletes every `step`-th of the given blobs (a restore then has to bring them back from the packs). */
export function removeBlobs(root: string, paths: readonly string[], step: number): number {
  let n = 0;
  for (let i = 0; i < paths.length; i += step) {
    rmSync(join(root, paths[i] as string), { force: true });
    n++;
  }
  return n;
}

/** Empties a directory without removing it (a volume's mount point stays). */
export function emptyDir(dir: string): void {
  for (const e of readdirSync(dir)) rmSync(join(dir, e), { recursive: true, force: true });
}

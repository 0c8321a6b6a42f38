import { randomFillSync } from 'node:crypto';
import { chownSync, closeSync, mkdirSync, openSync, symlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';

const KB = 1024;
const MB = 1024 * KB;

/**
 * Deterministic-enough synthetic data: a pool of word text (compresses ~3-4x with zstd -3) and fresh random
 * bytes (incompressible), mixed per file the way a Moodle dataroot mixes documents, images and archives.
 */
export class Source {
  private readonly text: Buffer;
  private readonly rnd = Buffer.allocUnsafe(4 * MB);
  private seed = 12345;

  constructor() {
    const words: string[] = [];
    for (let i = 0; i < 6000; i++) {
      const n = 2 + (this.next() % 9);
      let w = '';
      for (let j = 0; j < n; j++) w += String.fromCharCode(97 + (this.next() % 26));
      words.push(w);
    }
    const parts: string[] = [];
    let len = 0;
    while (len < 8 * MB) {
      const w = words[this.next() % words.length] as string;
      const sep = this.next() % 14 === 0 ? '.\n' : ' ';
      parts.push(w, sep);
      len += w.length + sep.length;
    }
    this.text = Buffer.from(parts.join(''));
  }

  /** A small linear congruential generator: reproducible layout, no crypto cost. */
  next(): number {
    this.seed = (this.seed * 1103515245 + 12345) & 0x7fffffff;
    return this.seed;
  }

  textSlice(n: number): Buffer {
    const off = this.next() % (this.text.length - n);
    return this.text.subarray(off, off + n);
  }

  randomSlice(n: number): Buffer {
    return randomFillSync(this.rnd, 0, n).subarray(0, n);
  }
}

export type Kind = 'random' | 'text' | 'mixed';

/** Writes `size` bytes of one kind to `path` in blocks of at most 4 MB. */
export function writeFile(
  src: Source,
  path: string,
  size: number,
  kind: Kind,
  owner?: [number, number],
): void {
  const fd = openSync(path, 'w', 0o640);
  try {
    let left = size;
    let i = 0;
    while (left > 0) {
      const n = Math.min(left, kind === 'mixed' ? 256 * KB : 4 * MB);
      const useText = kind === 'text' || (kind === 'mixed' && i % 2 === 0);
      writeSync(fd, useText ? src.textSlice(n) : src.randomSlice(n));
      left -= n;
      i++;
    }
  } finally {
    closeSync(fd);
  }
  if (owner) chownSync(path, owner[0], owner[1]);
}

/** A size between lo and hi, skewed towards small files (many small, few large, as in a dataroot). */
export function skewed(src: Source, lo: number, hi: number): number {
  const r = (src.next() % 10000) / 10000;
  return Math.round(lo * (hi / lo) ** (r * r));
}

export interface Generated {
  bytes: number;
  files: number;
}

/**
 * moodledata-like: filedir blobs of mixed compressibility (≈40 % random, 35 % text, 25 % half/half) in
 * filedir/xx/yy/<hash>, plus cache, sessions and temp as many small text files; owned by uid/gid 1.
 */
export function genMoodledata(dir: string, bytes: number): Generated {
  const src = new Source();
  const own: [number, number] = [1, 1];
  let written = 0;
  let files = 0;
  const blobBudget = bytes * 0.93;
  while (written < blobBudget) {
    const h = (src.next() >>> 0).toString(16).padStart(8, '0');
    const d = join(dir, 'filedir', h.slice(0, 2), h.slice(2, 4));
    mkdirSync(d, { recursive: true });
    const size = Math.min(skewed(src, 4 * KB, 24 * MB), Math.max(1, blobBudget - written));
    const pick = src.next() % 100;
    const kind: Kind = pick < 40 ? 'random' : pick < 75 ? 'text' : 'mixed';
    writeFile(src, join(d, `${h}${files.toString(16)}`), size, kind, own);
    written += size;
    files++;
  }
  for (const sub of ['cache', 'localcache', 'sessions', 'temp'])
    mkdirSync(join(dir, sub), { recursive: true });
  let i = 0;
  while (written < bytes) {
    const sub = ['cache', 'localcache', 'sessions', 'temp'][i % 4] as string;
    const d = join(dir, sub, String(i % 200));
    if (i < 200 * 4) mkdirSync(d, { recursive: true });
    const size = 256 + (src.next() % (6 * KB));
    writeFile(src, join(d, `f${i}.txt`), size, 'text', own);
    written += size;
    files++;
    i++;
  }
  writeFile(src, join(dir, '.htaccess'), 64, 'text', own);
  symlinkSync('filedir', join(dir, 'files-link'));
  return { bytes: written, files: files + 1 };
}

/** Moodle code-like: PHP-sized text files in nested directories. */
export function genCode(dir: string, bytes: number): Generated {
  const src = new Source();
  let written = 0;
  let files = 0;
  while (written < bytes) {
    const d = join(dir, `mod${files % 40}`, `sub${files % 7}`);
    if (files < 280) mkdirSync(d, { recursive: true });
    const size = Math.min(skewed(src, 512, 64 * KB), bytes - written);
    writeFile(src, join(d, `f${files}.php`), Math.max(1, size), 'text');
    written += size;
    files++;
  }
  return { bytes: written, files };
}

/** A database-like volume: a few large files of half text rows, half random pages. */
export function genDatabase(dir: string, bytes: number): Generated {
  const src = new Source();
  const own: [number, number] = [1001, 1001];
  mkdirSync(join(dir, 'data', 'moodle'), { recursive: true });
  const big = Math.floor(bytes / 4);
  for (let i = 0; i < 4; i++) writeFile(src, join(dir, 'data', 'moodle', `t${i}.ibd`), big, 'mixed', own);
  return { bytes: big * 4, files: 4 };
}

/** `count` small files (0.5–8 KB, half text, half random) in directories of 500. */
export function genSmallFiles(dir: string, count: number): Generated {
  const src = new Source();
  let written = 0;
  for (let i = 0; i < count; i++) {
    const d = join(dir, `d${Math.floor(i / 500)}`);
    if (i % 500 === 0) mkdirSync(d, { recursive: true });
    const size = 512 + (src.next() % (7.5 * KB));
    writeFile(src, join(d, `f${i}`), size, i % 2 === 0 ? 'text' : 'random');
    written += size;
  }
  return { bytes: written, files: count };
}

/** A large volume of big files (half text, half random blocks) for the memory check. */
export function genBig(dir: string, bytes: number): Generated {
  const src = new Source();
  const file = 512 * MB;
  let written = 0;
  let files = 0;
  while (written < bytes) {
    const size = Math.min(file, bytes - written);
    writeFile(src, join(dir, `course-backup-${files}.mbz`), size, 'mixed');
    written += size;
    files++;
  }
  return { bytes: written, files };
}

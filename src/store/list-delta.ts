import { endianness } from 'node:os';
import type { Readable } from 'node:stream';
import { SidecarError } from '../common/errors.js';
import {
  type BlobEntry,
  checkListEnd,
  DIR_LINE_PREFIX,
  type DirEntry,
  decodeList,
  type ListSource,
  listReadError,
  parseBlobLine,
  parseDirLine,
} from './blob-list.js';

/**
 * A snapshot's blob list as the difference from a shared base list (docs/format.md, "A snapshot's blob
 * list"): the lines the base lacks or has otherwise, and a `gone` line for each path of the base that the
 * snapshot does not have. A 2nd backup of an unchanged dataroot then stores a few bytes of list instead of
 * the whole list (~32 bytes a blob compressed: 6.7 MB at 200,000 blobs, every run).
 */

/** First line of such a list; the second names the base: `base\t<sha256>\t<blobs in it>`. */
export const DELTA_LIST_HEADER = 'mbs-blobs 3';
export const BASE_PREFIX = 'base\t';
/** A path of the base that the snapshot does not have: `gone\t<path>`. */
export const GONE_PREFIX = 'gone\t';

const NL = 10;
const TAB = 9;
const DASH = 45;

/**
 * Calls `fn` for every line of a stream of text chunks (without the newline), across chunk borders. The
 * range is valid only during the call; `fn` returns a promise only when it has to wait (awaiting every line,
 * and a BigInt a hash, made a diff of 265,536 lines 0.70–1.17 s against 0.32–0.48 s without both).
 */
export async function forEachLine(
  source: AsyncIterable<Buffer | string>,
  fn: (buf: Buffer, start: number, end: number) => undefined | Promise<void>,
): Promise<void> {
  // A line cut by a chunk's end is joined alone; the chunk itself is never copied (a copy of every 1 MB
  // chunk, three passes over 26 MB of list, was ~30 MB more peak RSS at 200,000 blobs).
  let carry: Buffer | undefined;
  for await (const c of source) {
    const buf = typeof c === 'string' ? Buffer.from(c) : c;
    let start = 0;
    let nl = buf.indexOf(NL, start);
    if (carry && nl >= 0) {
      // With its newline, as every range given to fn has one at `end`.
      const line = Buffer.concat([carry, buf.subarray(0, nl + 1)]);
      carry = undefined;
      const waiting = fn(line, 0, line.length - 1);
      if (waiting) await waiting;
      start = nl + 1;
      nl = buf.indexOf(NL, start);
    }
    for (; nl >= 0; nl = buf.indexOf(NL, start)) {
      const waiting = fn(buf, start, nl);
      if (waiting) await waiting;
      start = nl + 1;
    }
    if (start < buf.length)
      carry = carry ? Buffer.concat([carry, buf.subarray(start)]) : Buffer.from(buf.subarray(start));
  }
  if (carry) throw new Error('the list does not end with a newline');
}

/** The last hash64 made: its high and low 32 bits (two numbers, no BigInt a line). */
const last = { hi: 0, lo: 0 };

/**
 * A 64-bit hash of bytes into `last`: two 32-bit multiply-xor lanes, mixed at the end. Not cryptographic: it
 * tells lines apart within one site's lists, where two different lines colliding is ~1e-9 a run (diffLists).
 */
function hash64(buf: Buffer, start: number, end: number): void {
  let a = 0x811c9dc5;
  let b = 0x9747b28c;
  for (let i = start; i < end; i++) {
    const c = buf[i] as number;
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
    b ^= b >>> 15;
  }
  a ^= a >>> 16;
  a = Math.imul(a, 0x85ebca6b);
  a ^= a >>> 13;
  b = Math.imul(b ^ (b >>> 16), 0xc2b2ae35);
  b ^= b >>> 16;
  last.hi = a >>> 0;
  last.lo = b >>> 0;
}

/** Where a list line's path starts: after its last tab (a path holds none). */
export function pathStart(buf: Buffer, start: number, end: number): number {
  const tab = buf.lastIndexOf(TAB, end - 1);
  return tab >= start ? tab + 1 : start;
}

/** Whether a line of a list is a directory line (`-\t-\t…`). */
export function isDirLine(buf: Buffer, start: number): boolean {
  return buf[start] === DASH && buf[start + 1] === TAB;
}

/** Which 32-bit word of a 64-bit number comes first in memory: sort() orders them as numbers. */
const LO = endianness() === 'LE' ? 0 : 1;
const HI = 1 - LO;

/**
 * A set of 64-bit hashes: filled (from `last`), sealed (sorted as unsigned 64-bit numbers), then asked (for
 * `last`). Stored as pairs of 32-bit words, so that nothing is a BigInt.
 */
class Hashes {
  private words: Uint32Array;
  private n = 0;
  /** `expected`: how many will come, so that a million lines do not pass through doubling copies. */
  constructor(expected = 1024) {
    this.words = new Uint32Array(2 * Math.max(16, expected));
  }
  add(): void {
    if (2 * this.n === this.words.length) {
      const grown = new Uint32Array(this.words.length * 2);
      grown.set(this.words);
      this.words = grown;
    }
    this.words[2 * this.n + LO] = last.lo;
    this.words[2 * this.n + HI] = last.hi;
    this.n++;
  }
  seal(): this {
    const w = this.words;
    new BigUint64Array(w.buffer, w.byteOffset, this.n).sort();
    return this;
  }
  has(): boolean {
    const w = this.words;
    const { hi, lo } = last;
    let a = 0;
    let b = this.n - 1;
    while (a <= b) {
      const mid = (a + b) >>> 1;
      const h = w[2 * mid + HI] as number;
      const l = w[2 * mid + LO] as number;
      if (h === hi && l === lo) return true;
      if (h < hi || (h === hi && l < lo)) a = mid + 1;
      else b = mid - 1;
    }
    return false;
  }
}

export interface DeltaResult {
  /** Lines written (changed or new lines, and gone lines). */
  lines: number;
  /** Blob lines the snapshot has by this delta and its base: must equal the current list's count. */
  blobs: number;
}

/**
 * The current list's text as a delta from the base's (both without their header; each given as a source
 * that can be read again), written through `out`. A line of the current list whose exact text the base has
 * is left out; every other one is written; a base path the current list lacks becomes a gone line. Returns
 * null, with `out` to be discarded, once more than `limit` lines would be written: the caller then writes a
 * new base. Three passes, at most two 8-byte hashes a line held (16 MB a million lines), no line kept.
 *
 * Equal hashes of two different lines would leave a changed line out. With 64-bit hashes and, say, 10,000
 * changed lines against 1,000,000 a run that is ~5e-10; the caller also checks the blob count it returns.
 */
export async function diffLists(o: {
  base: () => AsyncIterable<Buffer | string>;
  current: () => AsyncIterable<Buffer | string>;
  limit: number;
  out: (line: Buffer) => Promise<void>;
  /** About how many lines each list has (blobs and directories): the hash arrays are sized once. */
  expected?: { base: number; current: number };
}): Promise<DeltaResult | null> {
  const filling = new Hashes(o.expected?.base);
  await forEachLine(o.base(), (buf, s, e) => {
    hash64(buf, s, e);
    filling.add();
    return undefined;
  });
  let baseLines: Hashes | undefined = filling.seal();
  let lines = 0;
  let blobs = 0;
  const paths = new Hashes(o.expected?.current);
  // Paths of the lines written: the base's lines at those paths are replaced.
  const changed = new Hashes();
  let over = false;
  const write = (line: Buffer): undefined | Promise<void> => {
    if (++lines > o.limit) over = true;
    else return o.out(line);
    return undefined;
  };
  await forEachLine(o.current(), (buf, s, e) => {
    if (over) return undefined;
    hash64(buf, pathStart(buf, s, e), e);
    paths.add();
    const { hi, lo } = last;
    hash64(buf, s, e);
    if (baseLines?.has()) return undefined;
    last.hi = hi;
    last.lo = lo;
    changed.add();
    if (!isDirLine(buf, s)) blobs++;
    return write(Buffer.from(buf.subarray(s, e + 1)));
  });
  if (over) return null;
  baseLines = undefined; // 8 bytes a line, not needed for the base's second pass
  paths.seal();
  changed.seal();
  await forEachLine(o.base(), (buf, s, e) => {
    if (over) return undefined;
    const from = pathStart(buf, s, e);
    hash64(buf, from, e);
    if (paths.has()) {
      if (!isDirLine(buf, s) && !changed.has()) blobs++; // kept as the base has it
      return undefined;
    }
    return write(Buffer.concat([Buffer.from(GONE_PREFIX), buf.subarray(from, e + 1)]));
  });
  return over ? null : { lines, blobs };
}

export type DeltaItem =
  | { kind: 'base'; sha256: string; count: number }
  | { kind: 'gone'; path: string }
  | { kind: 'blob'; entry: BlobEntry }
  | { kind: 'dir'; entry: DirEntry };

/**
 * A stored delta list's items, its base first. Its stored bytes' sha256 is checked at the end: a caller acts
 * on what it read only once the generator has finished.
 */
export async function* readDeltaList(source: Readable, o: ListSource): AsyncGenerator<DeltaItem> {
  const bad = (why: string) => new SidecarError('INTEGRITY_FAILED', `${o.where}: ${why}`);
  const { tap, text, feed } = decodeList(source, o, 1 << 16);
  let n = 0;
  let rest = '';
  try {
    for await (const chunk of text) {
      const lines = (rest + (chunk as Buffer).toString('utf8')).split('\n');
      rest = lines.pop() ?? '';
      for (const line of lines) {
        n++;
        if (n === 1) {
          if (line !== DELTA_LIST_HEADER)
            throw bad(`not a delta list (first line ${JSON.stringify(line.slice(0, 40))})`);
        } else if (n === 2) {
          const [tag, sha256 = '', count = ''] = line.split('\t');
          if (`${tag}\t` !== BASE_PREFIX || !/^[0-9a-f]{64}$/.test(sha256) || !/^\d+$/.test(count))
            throw bad(`malformed base line ${JSON.stringify(line.slice(0, 120))}`);
          yield { kind: 'base', sha256, count: Number(count) };
        } else if (line.startsWith(GONE_PREFIX)) {
          const path = line.slice(GONE_PREFIX.length);
          if (!/^(filedir|trashdir)\/[^/\t]+\/[^/\t]+(\/[^/\t]+)?$/.test(path))
            throw bad(`malformed gone line ${JSON.stringify(line.slice(0, 120))}`);
          yield { kind: 'gone', path };
        } else if (line.startsWith(DIR_LINE_PREFIX))
          yield { kind: 'dir', entry: parseDirLine(line, o.where) };
        else yield { kind: 'blob', entry: parseBlobLine(line, o.where) };
      }
    }
    await feed;
  } catch (err) {
    throw listReadError(err, o.where);
  } finally {
    if (!text.readableEnded) text.destroy();
  }
  checkListEnd(o, tap, rest !== '' || n < 2);
}

const AREA: Record<string, number> = { filedir: 0, trashdir: 1 };
const BLOB_PATH = /^(filedir|trashdir)\/([0-9a-f]{2})\/([0-9a-f]{2})\/([0-9a-f]{40})$/;
const KEY = 23;
const FILEDIR = Buffer.from('filedir');
const TRASHDIR = Buffer.from('trashdir');

/**
 * Blob paths as exact 23-byte keys (area, the two directory bytes, the 20-byte name) in one sorted buffer,
 * asked with a line's bytes and no string made: prune's mark leaves out a base's lines that a delta names
 * without a string a line (a million lines of strings were ~70 MB of garbage there). A path of another shape
 * (never written by Moodle) is kept as a string and compared as one.
 */
export class BlobPathKeys {
  private keys: Buffer[] = [];
  private sorted = Buffer.alloc(0);
  private readonly odd = new Set<string>();
  private readonly probe = Buffer.alloc(KEY);

  add(path: string): void {
    const m = BLOB_PATH.exec(path);
    if (!m) {
      this.odd.add(path);
      return;
    }
    this.keys.push(
      Buffer.from([AREA[m[1] as string] as number, ...Buffer.from(`${m[2]}${m[3]}${m[4]}`, 'hex')]),
    );
  }

  seal(): this {
    this.keys.sort(Buffer.compare);
    this.sorted = Buffer.concat(this.keys);
    this.keys = [];
    return this;
  }

  get size(): number {
    return this.sorted.length / KEY + this.odd.size;
  }

  /** Whether the path in `buf[start, end)` is one of them. */
  has(buf: Buffer, start: number, end: number): boolean {
    if (!this.toKey(buf, start, end))
      return this.odd.size > 0 && this.odd.has(buf.toString('utf8', start, end));
    let lo = 0;
    let hi = this.sorted.length / KEY - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const c = this.probe.compare(this.sorted, mid * KEY, mid * KEY + KEY);
      if (c === 0) return true;
      if (c > 0) lo = mid + 1;
      else hi = mid - 1;
    }
    return false;
  }

  /** The path's key into `probe`, or false when it is not of the blob shape. */
  private toKey(buf: Buffer, start: number, end: number): boolean {
    // filedir/ab/cd/<40> is 54 bytes, trashdir/… 55.
    const area = end - start === 54 ? 0 : end - start === 55 ? 1 : -1;
    if (area < 0) return false;
    const at = start + (area === 0 ? 8 : 9);
    if (buf[at - 1] !== 47 || buf[at + 2] !== 47 || buf[at + 5] !== 47) return false;
    if ((area === 0 ? FILEDIR : TRASHDIR).compare(buf, start, at - 1) !== 0) return false;
    this.probe[0] = area;
    const hex = (i: number) => {
      const c = buf[i] as number;
      return c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : -1;
    };
    const byte = (i: number) => {
      const hi = hex(i);
      const lo = hex(i + 1);
      return hi < 0 || lo < 0 ? -1 : (hi << 4) | lo;
    };
    const d1 = byte(at);
    const d2 = byte(at + 3);
    if (d1 < 0 || d2 < 0) return false;
    this.probe[1] = d1;
    this.probe[2] = d2;
    for (let k = 0; k < 20; k++) {
      const b = byte(at + 6 + 2 * k);
      if (b < 0) return false;
      this.probe[3 + k] = b;
    }
    return true;
  }
}

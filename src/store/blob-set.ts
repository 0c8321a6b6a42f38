import type { BlobEntry } from './blob-list.js';
import { compareHash, HASH_BYTES, hashOrder } from './entry-table.js';
import { type BlobArea, blobPath } from './layout.js';
import { leafOf, leafSlot } from './leaf-table.js';

const AREAS: readonly BlobArea[] = ['filedir', 'trashdir'];
/** Entries allocated up front at most (~700 MB of columns): a damaged count cannot ask for more. */
const PRESIZE_MAX = 1 << 24;

/** A size that does not fit 32 bits is kept in `bigSizes`; a class past the palette's room in `oddClasses`. */
const BIG = 0xffff_ffff;
const CLASSES_MAX = 0xffff;
/** Pack numbers + 1 fit 16 bits until a store has 65,535 packs (~4 TB of them): then the column widens. */
const PACKS_16 = 0xffff;

/** What most blobs of a dataroot share: their area, mode and owner (a few combinations, not a million). */
interface BlobClass {
  area: number;
  mode: number;
  uid: number;
  gid: number;
}

/**
 * A snapshot's blob set in memory, in columns: 20 bytes of hash, 16 of attributes and, in a framed store, 4 of
 * the offset in its pack a blob (36–40 bytes: a million blobs take ~40 MB rather than the ~250 MB of as many
 * objects). Sizes are
 * 32-bit (a larger one aside), area, mode and owner an index into the few combinations a dataroot has, pack
 * numbers 16-bit while they fit.
 * A path is kept as a string only when it is not the blob's own place (`<area>/ab/cd/<sha1>`): a corrupted
 * file, or one in the wrong directory.
 */
export class BlobSet {
  private n = 0;
  private hashes = Buffer.alloc(0);
  private sizes = new Uint32Array(0);
  private mtimes = new Float64Array(0);
  /** Index into `classList`, CLASSES_MAX when the entry's class is in `oddClasses`. */
  private classes = new Uint16Array(0);
  private readonly classList: BlobClass[] = [];
  private readonly classIndex = new Map<string, number>();
  private readonly oddClasses = new Map<number, BlobClass>();
  /** The last class added and its index: consecutive blobs mostly share one (no key string made for them). */
  private last: { c: BlobClass; k: number } | undefined;
  private readonly bigSizes = new Map<number, number>();
  /** Pack number + 1 of each blob once located (store/blob-locate.ts), 0 before. */
  private packs: Uint16Array | Uint32Array = new Uint16Array(0);
  /**
   * The blob's data offset in its pack's tar in 512-byte blocks (tar aligns it), 0 when not known. Made at the
   * first offset given: only framed packs' blobs need one (4 MB a million blobs that unframed stores spare).
   */
  private offsets: Uint32Array | undefined;
  private readonly odd = new Map<number, string>();

  /**
   * `capacity`: the count the manifest gives, so a million entries are allocated once, not grown by doubling
   * (the old and the new columns together were half as much again). A manifest is not trusted that far: beyond
   * PRESIZE_MAX the set grows as it fills.
   */
  constructor(capacity = 0) {
    if (capacity > 0) this.grow(Math.min(capacity, PRESIZE_MAX));
  }

  get length(): number {
    return this.n;
  }

  add(b: BlobEntry): void {
    if (this.n === this.sizes.length) this.grow(Math.max(1024, this.n * 2));
    const i = this.n++;
    this.hashes.write(b.sha1, i * 20, 'hex');
    this.sizes[i] = b.size < BIG ? b.size : BIG;
    if (b.size >= BIG) this.bigSizes.set(i, b.size);
    this.mtimes[i] = b.mtimeMs;
    const area = b.path.startsWith('trashdir/') ? 1 : 0;
    this.classes[i] = this.classOf(i, { area, mode: b.mode & 0o7777, uid: b.uid, gid: b.gid });
    if (b.path !== blobPath(b.sha1, AREAS[area])) this.odd.set(i, b.path);
  }

  sha1(i: number): string {
    return this.hashes.toString('hex', i * 20, i * 20 + 20);
  }

  /** The raw 20-byte hash (a view: copy it to keep it). */
  hash(i: number): Buffer {
    return this.hashes.subarray(i * 20, i * 20 + 20);
  }

  at(i: number): BlobEntry {
    const sha1 = this.sha1(i);
    const c = this.class(i);
    return {
      sha1,
      size: this.sizeOf(i),
      mode: c.mode,
      uid: c.uid,
      gid: c.gid,
      mtimeMs: this.mtimes[i] as number,
      path: this.odd.get(i) ?? blobPath(sha1, AREAS[c.area]),
    };
  }

  sizeOf(i: number): number {
    return this.bigSizes.get(i) ?? (this.sizes[i] as number);
  }

  /** Whether entry `i`, whose hash is `sha1`'s, lies at `path`: no entry object made, unlike at(). */
  isAt(i: number, path: string, sha1: string): boolean {
    const odd = this.odd.get(i);
    return odd !== undefined ? odd === path : path === blobPath(sha1, AREAS[this.class(i).area]);
  }

  /** The slot of entry `i`'s leaf directory (store/leaf-table.ts), or -1 when it is not one of Moodle's shape. */
  leafSlot(i: number): number {
    const odd = this.odd.get(i);
    if (odd !== undefined) return leafSlot(leafOf(odd));
    return (
      this.class(i).area * 65536 + (this.hashes[i * 20] as number) * 256 + (this.hashes[i * 20 + 1] as number)
    );
  }

  /** Whether entry `i`'s mode (permission bits), owner and time are these. */
  sameAttrs(i: number, a: { mode: number; uid: number; gid: number; mtimeMs: number }): boolean {
    const c = this.class(i);
    return (a.mode & 0o7777) === c.mode && a.uid === c.uid && a.gid === c.gid && a.mtimeMs === this.mtimes[i];
  }

  private class(i: number): BlobClass {
    const k = this.classes[i] as number;
    return (
      (k === CLASSES_MAX ? this.oddClasses.get(i) : this.classList[k]) ?? { area: 0, mode: 0, uid: 0, gid: 0 }
    );
  }

  private classOf(i: number, c: BlobClass): number {
    const l = this.last;
    if (l && l.c.area === c.area && l.c.mode === c.mode && l.c.uid === c.uid && l.c.gid === c.gid) {
      if (l.k === CLASSES_MAX) this.oddClasses.set(i, l.c);
      return l.k;
    }
    const key = `${c.area}:${c.mode}:${c.uid}:${c.gid}`;
    let k = this.classIndex.get(key);
    if (k === undefined && this.classList.length < CLASSES_MAX) {
      k = this.classList.push(c) - 1;
      this.classIndex.set(key, k);
    }
    if (k === undefined) {
      k = CLASSES_MAX;
      this.oddClasses.set(i, c);
    }
    this.last = { c, k };
    return k;
  }

  /** The located pack's number (in the caller's pack list), or -1. */
  packOf(i: number): number {
    return (this.packs[i] ?? 0) - 1;
  }

  /** `offset`: where the blob's data starts in the pack's tar (a multiple of 512 there). */
  setPack(i: number, pack: number, offset = 0): void {
    if (pack + 1 > PACKS_16 && this.packs instanceof Uint16Array) this.packs = Uint32Array.from(this.packs);
    this.packs[i] = pack + 1;
    const block = offset / 512;
    if (block === 0) {
      if (this.offsets) this.offsets[i] = 0;
      return;
    }
    this.offsets ??= new Uint32Array(this.sizes.length);
    this.offsets[i] = Number.isInteger(block) && block < 2 ** 32 ? block : 0;
  }

  /** The blob's data offset in its located pack's tar, or undefined when not known. */
  offsetOf(i: number): number | undefined {
    const block = this.offsets?.[i] ?? 0;
    return block > 0 ? block * 512 : undefined;
  }

  /**
   * The entries in hash order, as a permutation (4 bytes an entry), for find(). Made anew each call (a
   * fraction of a second at a million) and not kept: the fetching that follows has no use for it.
   */
  hashOrder(): Uint32Array {
    return hashOrder(this.hashes, this.n);
  }

  /**
   * Calls `each` with every entry whose hash is the 20 bytes of `src` at `at` (a content may be at two paths),
   * by binary search in `order` (from hashOrder()).
   */
  find(order: Uint32Array, src: Uint8Array, at: number, each: (i: number) => void): void {
    let lo = 0;
    let hi = this.n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compareHash(this.hashes, (order[mid] ?? 0) * HASH_BYTES, src, at) < 0) lo = mid + 1;
      else hi = mid;
    }
    for (let k = lo; k < this.n; k++) {
      const i = order[k] ?? 0;
      if (compareHash(this.hashes, i * HASH_BYTES, src, at) !== 0) return;
      each(i);
    }
  }

  private grow(cap: number): void {
    const hashes = Buffer.alloc(cap * 20);
    this.hashes.copy(hashes);
    this.hashes = hashes;
    const copy = <T extends Float64Array | Uint16Array | Uint32Array | Uint8Array>(
      old: T,
      make: (n: number) => T,
    ): T => {
      const next = make(cap);
      next.set(old);
      return next;
    };
    this.sizes = copy(this.sizes, (c) => new Uint32Array(c));
    this.mtimes = copy(this.mtimes, (c) => new Float64Array(c));
    this.classes = copy(this.classes, (c) => new Uint16Array(c));
    this.packs = copy(this.packs, (c) =>
      this.packs instanceof Uint16Array ? new Uint16Array(c) : new Uint32Array(c),
    );
    if (this.offsets) this.offsets = copy(this.offsets, (c) => new Uint32Array(c));
  }
}

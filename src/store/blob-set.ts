import type { BlobEntry } from './blob-list.js';
import { compareHash, HASH_BYTES, hashOrder } from './entry-table.js';
import { type BlobArea, blobPath } from './layout.js';

const AREAS: readonly BlobArea[] = ['filedir', 'trashdir'];
/** Entries allocated up front at most (~700 MB of columns): a damaged count cannot ask for more. */
const PRESIZE_MAX = 1 << 24;

/** A size that does not fit 32 bits is kept in `bigSizes`; an owner past the palette's room in `oddOwners`. */
const BIG = 0xffff_ffff;
const OWNERS_MAX = 0xffff;

/**
 * A snapshot's blob set in memory, in columns: 20 bytes of hash and 21 of attributes a blob (41 bytes: a
 * million blobs take ~41 MB rather than the ~250 MB of as many objects). Sizes are 32-bit (a larger one aside),
 * owners an index into the few (uid, gid) pairs a dataroot has. A path is kept as a string only when it is not
 * the blob's own place (`<area>/ab/cd/<sha1>`): a corrupted file, or one in the wrong directory.
 */
export class BlobSet {
  private n = 0;
  private hashes = Buffer.alloc(0);
  private sizes = new Uint32Array(0);
  private mtimes = new Float64Array(0);
  private modes = new Uint16Array(0);
  /** Index into `ownerPairs` (uid, gid), OWNERS_MAX when the pair is in `oddOwners`. */
  private owners = new Uint16Array(0);
  private readonly ownerPairs: [number, number][] = [];
  private readonly ownerIndex = new Map<string, number>();
  private readonly oddOwners = new Map<number, [number, number]>();
  private readonly bigSizes = new Map<number, number>();
  private areas = new Uint8Array(0);
  /** Pack number + 1 of each blob once located (store/blob-locate.ts), 0 before. */
  private packs = new Uint32Array(0);
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
    this.modes[i] = b.mode & 0o7777;
    this.owners[i] = this.owner(i, b.uid, b.gid);
    const area = b.path.startsWith('trashdir/') ? 1 : 0;
    this.areas[i] = area;
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
    const o = this.owners[i] as number;
    const owner = (o === OWNERS_MAX ? this.oddOwners.get(i) : this.ownerPairs[o]) ?? [0, 0];
    return {
      sha1,
      size: this.bigSizes.get(i) ?? (this.sizes[i] as number),
      mode: this.modes[i] as number,
      uid: owner[0],
      gid: owner[1],
      mtimeMs: this.mtimes[i] as number,
      path: this.odd.get(i) ?? blobPath(sha1, AREAS[this.areas[i] as number]),
    };
  }

  sizeOf(i: number): number {
    return this.bigSizes.get(i) ?? (this.sizes[i] as number);
  }

  /** Whether entry `i`, whose hash is `sha1`'s, lies at `path`: no entry object made, unlike at(). */
  isAt(i: number, path: string, sha1: string): boolean {
    const odd = this.odd.get(i);
    return odd !== undefined ? odd === path : path === blobPath(sha1, AREAS[this.areas[i] as number]);
  }

  /** Whether entry `i`'s mode (permission bits), owner and time are these. */
  sameAttrs(i: number, a: { mode: number; uid: number; gid: number; mtimeMs: number }): boolean {
    const o = this.owners[i] as number;
    const owner = (o === OWNERS_MAX ? this.oddOwners.get(i) : this.ownerPairs[o]) ?? [0, 0];
    return (
      (a.mode & 0o7777) === this.modes[i] &&
      a.uid === owner[0] &&
      a.gid === owner[1] &&
      a.mtimeMs === this.mtimes[i]
    );
  }

  private owner(i: number, uid: number, gid: number): number {
    const key = `${uid}:${gid}`;
    let o = this.ownerIndex.get(key);
    if (o === undefined && this.ownerPairs.length < OWNERS_MAX) {
      o = this.ownerPairs.push([uid, gid]) - 1;
      this.ownerIndex.set(key, o);
    }
    if (o !== undefined) return o;
    this.oddOwners.set(i, [uid, gid]);
    return OWNERS_MAX;
  }

  /** The located pack's number (in the caller's pack list), or -1. */
  packOf(i: number): number {
    return (this.packs[i] ?? 0) - 1;
  }

  setPack(i: number, pack: number): void {
    this.packs[i] = pack + 1;
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
    this.modes = copy(this.modes, (c) => new Uint16Array(c));
    this.owners = copy(this.owners, (c) => new Uint16Array(c));
    this.areas = copy(this.areas, (c) => new Uint8Array(c));
    this.packs = copy(this.packs, (c) => new Uint32Array(c));
  }
}

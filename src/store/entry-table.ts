/**
 * A compact table of blob entries: SHA-1 (20 bytes) → pack number, offset, size, in parallel typed arrays
 * (36 bytes an entry, ~36 MB for a million blobs) instead of a Map of strings (~200 bytes an entry).
 * Sorted by hash after sort(); lookups are binary searches.
 */

export const HASH_BYTES = 20;
/** Tar data starts on a 512-byte boundary: offsets are kept in blocks so a Uint32 reaches 2 TiB. */
const BLOCK = 512;

export interface Entry {
  sha1: Uint8Array;
  pack: number;
  offset: number;
  size: number;
}

export class EntryTable {
  length = 0;
  private hashes: Uint8Array;
  private packs: Uint32Array;
  private blocks: Uint32Array;
  private sizes: Float64Array;
  /** Hashes only (20 bytes an entry): a backup asks only whether a blob is stored, never where. */
  readonly hashesOnly: boolean;

  constructor(capacity = 0, hashesOnly = false) {
    this.hashesOnly = hashesOnly;
    const columns = hashesOnly ? 0 : capacity;
    this.hashes = new Uint8Array(capacity * HASH_BYTES);
    this.packs = new Uint32Array(columns);
    this.blocks = new Uint32Array(columns);
    this.sizes = new Float64Array(columns);
  }

  get capacity(): number {
    return this.hashes.length / HASH_BYTES;
  }

  /** Bytes held by the arrays (what the table costs in memory). */
  get byteSize(): number {
    return this.hashes.byteLength + this.packs.byteLength + this.blocks.byteLength + this.sizes.byteLength;
  }

  hashAt(i: number): Uint8Array {
    return this.hashes.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES);
  }

  at(i: number): Entry {
    if (this.hashesOnly) throw new Error('this blob table keeps no locations (hashes only)');
    return {
      sha1: this.hashAt(i),
      pack: this.packs[i] ?? 0,
      offset: (this.blocks[i] ?? 0) * BLOCK,
      size: this.sizes[i] ?? 0,
    };
  }

  /** Appends without keeping order; call sort() before find(). */
  push(sha1: Uint8Array, pack: number, offset: number, size: number): void {
    if (sha1.length !== HASH_BYTES)
      throw new Error(`blob hash of ${sha1.length} bytes, expected ${HASH_BYTES}`);
    if (offset % BLOCK !== 0) throw new Error(`blob offset ${offset} is not on a tar block boundary`);
    if (this.length === this.capacity) this.reserve(Math.max(16, Math.ceil(this.capacity * 1.5)));
    const i = this.length++;
    this.hashes.set(sha1, i * HASH_BYTES);
    this.setColumns(i, pack, offset / BLOCK, size);
  }

  /** Like push, with the hash read from `src` at `at` (no view allocated: loading pushes millions). */
  pushFrom(src: Uint8Array, at: number, pack: number, offset: number, size: number): void {
    if (offset % BLOCK !== 0) throw new Error(`blob offset ${offset} is not on a tar block boundary`);
    if (this.length === this.capacity) this.reserve(Math.max(16, Math.ceil(this.capacity * 1.5)));
    const i = this.length++;
    const d = i * HASH_BYTES;
    for (let k = 0; k < HASH_BYTES; k++) this.hashes[d + k] = src[at + k] ?? 0;
    this.setColumns(i, pack, offset / BLOCK, size);
  }

  private setColumns(i: number, pack: number, block: number, size: number): void {
    if (this.hashesOnly) return;
    this.packs[i] = pack;
    this.blocks[i] = block;
    this.sizes[i] = size;
  }

  /** Grows the arrays to hold `capacity` entries (one copy; the old arrays become garbage). */
  reserve(capacity: number): void {
    if (capacity <= this.capacity) return;
    const n = this.length;
    const hashes = new Uint8Array(capacity * HASH_BYTES);
    hashes.set(this.hashes.subarray(0, n * HASH_BYTES));
    this.hashes = hashes;
    if (this.hashesOnly) return;
    const packs = new Uint32Array(capacity);
    packs.set(this.packs.subarray(0, n));
    const blocks = new Uint32Array(capacity);
    blocks.set(this.blocks.subarray(0, n));
    const sizes = new Float64Array(capacity);
    sizes.set(this.sizes.subarray(0, n));
    this.packs = packs;
    this.blocks = blocks;
    this.sizes = sizes;
  }

  /** Index of the entry with this hash, or -1. Needs sorted order. */
  find(sha1: Uint8Array): number {
    let lo = 0;
    let hi = this.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const c = compareHash(this.hashes, mid * HASH_BYTES, sha1, 0);
      if (c === 0) return mid;
      if (c < 0) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  /**
   * Sorts by hash in place and drops duplicate hashes (the first pushed wins: a blob that two packs hold
   * is read from the one indexed first). A permutation is built by a counting sort on the first two hash
   * bytes (SHA-1s spread evenly: ~15 entries a bucket at a million), each bucket finished by insertion
   * sort, then applied cycle by cycle: the only extra memory is the permutation (4 bytes an entry), and
   * nothing lands on the JS heap (a comparator sort copies the array into it).
   */
  sort(): void {
    const perm = hashOrder(this.hashes, this.length);
    this.applyPermutation(perm);
    this.dropDuplicates();
  }

  /** Moves entry perm[i] to position i for every i, following each cycle once. */
  private applyPermutation(perm: Uint32Array): void {
    const tmpHash = new Uint8Array(HASH_BYTES);
    for (let start = 0; start < perm.length; start++) {
      if (perm[start] === start) continue;
      tmpHash.set(this.hashAt(start));
      const tp = this.packs[start] ?? 0;
      const tb = this.blocks[start] ?? 0;
      const ts = this.sizes[start] ?? 0;
      let i = start;
      for (;;) {
        const from = perm[i] ?? i;
        perm[i] = i;
        if (from === start) {
          this.hashes.set(tmpHash, i * HASH_BYTES);
          this.setColumns(i, tp, tb, ts);
          break;
        }
        this.copy(from, i);
        i = from;
      }
    }
  }

  private dropDuplicates(): void {
    let w = 0;
    for (let r = 0; r < this.length; r++) {
      if (w > 0 && compareHash(this.hashes, (w - 1) * HASH_BYTES, this.hashes, r * HASH_BYTES) === 0)
        continue;
      if (w !== r) this.copy(r, w);
      w++;
    }
    this.length = w;
  }

  private copy(from: number, to: number): void {
    this.hashes.copyWithin(to * HASH_BYTES, from * HASH_BYTES, (from + 1) * HASH_BYTES);
    this.setColumns(to, this.packs[from] ?? 0, this.blocks[from] ?? 0, this.sizes[from] ?? 0);
  }

  /**
   * Merges another sorted table into this sorted one, in place from the back (the classic merge into
   * spare capacity), so a merge costs one pass and no second copy of this table. Entries already here win.
   */
  mergeFrom(other: EntryTable): void {
    const fresh = new EntryTable(other.length, this.hashesOnly);
    for (let j = 0; j < other.length; j++) {
      const h = other.hashAt(j);
      if (this.find(h) < 0)
        fresh.push(h, other.packs[j] ?? 0, (other.blocks[j] ?? 0) * BLOCK, other.sizes[j] ?? 0);
    }
    if (fresh.length === 0) return;
    // Grow only when the merge does not fit: growing by 25% on every merge (one per stored pack) made the
    // capacity exponential in the number of packs (a 1.1 GB dataroot's ~70 packs asked for 4.8 GB).
    if (this.length + fresh.length > this.capacity)
      this.reserve(Math.max(this.length + fresh.length, Math.ceil(this.capacity * 1.25)));
    let i = this.length - 1;
    let j = fresh.length - 1;
    let w = this.length + fresh.length - 1;
    this.length += fresh.length;
    while (j >= 0) {
      if (i >= 0 && compareHash(this.hashes, i * HASH_BYTES, fresh.hashes, j * HASH_BYTES) > 0) {
        this.copy(i--, w--);
      } else {
        this.hashes.set(fresh.hashAt(j), w * HASH_BYTES);
        this.setColumns(w, fresh.packs[j] ?? 0, fresh.blocks[j] ?? 0, fresh.sizes[j] ?? 0);
        w--;
        j--;
      }
    }
  }

  clear(): void {
    this.length = 0;
  }
}

/**
 * The order of `n` 20-byte hashes in `h` as a permutation (perm[i] = the i-th smallest; equal hashes keep
 * their order): a counting sort on the first two hash bytes (SHA-1s spread evenly: ~15 entries a bucket at a
 * million), each bucket finished by insertion sort. Only the permutation (4 bytes an entry) is allocated,
 * nothing on the JS heap (a comparator sort of the whole array copies it there).
 */
export function hashOrder(h: Uint8Array, n: number): Uint32Array {
  const bucketOf = (i: number) => ((h[i * HASH_BYTES] ?? 0) << 8) | (h[i * HASH_BYTES + 1] ?? 0);
  const starts = new Uint32Array(65537);
  for (let i = 0; i < n; i++) starts[bucketOf(i) + 1] = (starts[bucketOf(i) + 1] ?? 0) + 1;
  for (let b = 1; b <= 65536; b++) starts[b] = (starts[b] ?? 0) + (starts[b - 1] ?? 0);
  const perm = new Uint32Array(n);
  const fill = starts.slice(0, 65536);
  for (let i = 0; i < n; i++) {
    const b = bucketOf(i);
    perm[fill[b] ?? 0] = i;
    fill[b] = (fill[b] ?? 0) + 1;
  }
  const before = (a: number, b: number) => (compareHash(h, a * HASH_BYTES, h, b * HASH_BYTES) || a - b) < 0;
  for (let b = 0; b < 65536; b++) {
    const lo = starts[b] ?? 0;
    const hi = starts[b + 1] ?? 0;
    // A bucket that big means hashes ground to share a prefix: an n log n sort, on that bucket only.
    if (hi - lo > 64) {
      perm.subarray(lo, hi).sort((a, b) => (before(a, b) ? -1 : 1));
      continue;
    }
    for (let i = lo + 1; i < hi; i++) {
      const v = perm[i] ?? 0;
      let j = i - 1;
      for (; j >= lo && before(v, perm[j] ?? 0); j--) perm[j + 1] = perm[j] ?? 0;
      perm[j + 1] = v;
    }
  }
  return perm;
}

export function compareHash(a: Uint8Array, ao: number, b: Uint8Array, bo: number): number {
  for (let k = 0; k < HASH_BYTES; k++) {
    const d = (a[ao + k] ?? 0) - (b[bo + k] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

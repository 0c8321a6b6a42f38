import { compareHash, HASH_BYTES } from './entry-table.js';

/** New hashes collect unsorted up to this many, then are sorted and merged in (one pass each time). */
const PENDING_MAX = 262_144;
/** Hashes reserved up front at most (320 MB). */
const RESERVE_MAX = 1 << 24;

/**
 * A set of SHA-1s as one sorted buffer of raw 20-byte hashes: 20 bytes a blob (a million blobs: 20 MB),
 * not the ~100 bytes of a hex string in a Set. Prune's mark: the union of every kept snapshot's blob list.
 * Hashes already present are dropped on add (a binary search), so a union of many snapshots that share most
 * blobs only ever sorts the few new ones.
 */
export class HashSet20 {
  private sorted = new Uint8Array(0);
  private n = 0;
  private pending = new Uint8Array(0);
  private p = 0;

  get length(): number {
    this.seal();
    return this.n;
  }

  /** Bytes held (what the set costs in memory, spare room included). */
  get byteSize(): number {
    return this.sorted.byteLength + this.pending.byteLength;
  }

  add(hash: Uint8Array): void {
    if (hash.length !== HASH_BYTES) throw new Error(`hash of ${hash.length} bytes, expected ${HASH_BYTES}`);
    // Sealed before the lookup: seal() merges without looking for duplicates, so nothing pending may
    // already be in the sorted part.
    if (this.p >= PENDING_MAX) this.seal();
    if (this.find(hash) >= 0) return;
    if (this.p * HASH_BYTES === this.pending.length) this.growPending();
    this.pending.set(hash, this.p * HASH_BYTES);
    this.p++;
  }

  addHex(sha1: string): void {
    this.add(Buffer.from(sha1, 'hex'));
  }

  has(hash: Uint8Array): boolean {
    this.seal();
    return this.find(hash) >= 0;
  }

  hasHex(sha1: string): boolean {
    return this.has(Buffer.from(sha1, 'hex'));
  }

  /** The position (0 … length - 1, in hash order) of the 20 bytes of `src` at `at`, or -1. */
  position(src: Uint8Array, at = 0): number {
    this.seal();
    return this.find(src, at);
  }

  /** The hash at a position (a view). */
  hashAt(i: number): Uint8Array {
    this.seal();
    return this.sorted.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES);
  }

  /** Every hash in order (views into the set: copy one to keep it). */
  *hashes(): Generator<Uint8Array> {
    this.seal();
    for (let i = 0; i < this.n; i++) yield this.sorted.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES);
  }

  /**
   * Room for `n` hashes in all, allocated now (prune's mark: the largest kept list's count). Beyond
   * RESERVE_MAX the set grows as it fills: a count from a manifest is not trusted that far.
   */
  reserve(n: number): void {
    this.growSorted(Math.min(n, RESERVE_MAX));
  }

  /**
   * Sorts what is pending and merges it into the sorted buffer, in place from the back into its spare room
   * (pending hashes are never already in it: add() dropped those), so a merge holds no second copy of the set.
   */
  seal(): void {
    if (this.p === 0) return;
    const fresh = sortUnique(this.pending.subarray(0, this.p * HASH_BYTES));
    const f = fresh.length / HASH_BYTES;
    if ((this.n + f) * HASH_BYTES > this.sorted.length)
      this.growSorted(Math.max(this.n + f, Math.ceil((this.sorted.length / HASH_BYTES) * 1.25)));
    const a = this.sorted;
    let i = (this.n - 1) * HASH_BYTES;
    let j = (f - 1) * HASH_BYTES;
    let w = (this.n + f - 1) * HASH_BYTES;
    while (j >= 0) {
      if (i >= 0 && compareHash(a, i, fresh, j) > 0) {
        a.copyWithin(w, i, i + HASH_BYTES);
        i -= HASH_BYTES;
      } else {
        a.set(fresh.subarray(j, j + HASH_BYTES), w);
        j -= HASH_BYTES;
      }
      w -= HASH_BYTES;
    }
    this.n += f;
    this.p = 0;
    this.pending = new Uint8Array(0);
  }

  private growSorted(capacity: number): void {
    if (capacity * HASH_BYTES <= this.sorted.length) return;
    const next = new Uint8Array(capacity * HASH_BYTES);
    next.set(this.sorted.subarray(0, this.n * HASH_BYTES));
    this.sorted = next;
  }

  private find(hash: Uint8Array, at = 0): number {
    let lo = 0;
    let hi = this.n - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const c = compareHash(this.sorted, mid * HASH_BYTES, hash, at);
      if (c === 0) return mid;
      if (c < 0) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  private growPending(): void {
    const cap = Math.min(PENDING_MAX, Math.max(1024, this.p * 2));
    const next = new Uint8Array(cap * HASH_BYTES);
    next.set(this.pending.subarray(0, this.p * HASH_BYTES));
    this.pending = next;
  }
}

/**
 * The hashes of `buf` sorted and without duplicates, in a new buffer: a counting sort on the first two
 * bytes (SHA-1s spread evenly), each bucket finished by insertion sort.
 */
function sortUnique(buf: Uint8Array): Uint8Array {
  const n = buf.length / HASH_BYTES;
  const bucket = (i: number) => ((buf[i * HASH_BYTES] ?? 0) << 8) | (buf[i * HASH_BYTES + 1] ?? 0);
  const starts = new Uint32Array(65537);
  for (let i = 0; i < n; i++) starts[bucket(i) + 1] = (starts[bucket(i) + 1] ?? 0) + 1;
  for (let b = 1; b <= 65536; b++) starts[b] = (starts[b] ?? 0) + (starts[b - 1] ?? 0);
  const fill = starts.slice(0, 65536);
  const out = new Uint8Array(buf.length);
  for (let i = 0; i < n; i++) {
    const b = bucket(i);
    out.set(buf.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES), (fill[b] ?? 0) * HASH_BYTES);
    fill[b] = (fill[b] ?? 0) + 1;
  }
  const tmp = new Uint8Array(HASH_BYTES);
  for (let b = 0; b < 65536; b++) {
    const lo = starts[b] ?? 0;
    const hi = starts[b + 1] ?? 0;
    // Names chosen to share a prefix (cheap to make): an n log n sort of that bucket, not insertion sort.
    if (hi - lo > 64) {
      sortBucket(out, lo, hi);
      continue;
    }
    for (let i = lo + 1; i < hi; i++) {
      tmp.set(out.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES));
      let j = i - 1;
      for (; j >= lo && compareHash(out, j * HASH_BYTES, tmp, 0) > 0; j--)
        out.copyWithin((j + 1) * HASH_BYTES, j * HASH_BYTES, (j + 1) * HASH_BYTES);
      out.set(tmp, (j + 1) * HASH_BYTES);
    }
  }
  let w = 0;
  for (let r = 0; r < n; r++) {
    if (w > 0 && compareHash(out, (w - 1) * HASH_BYTES, out, r * HASH_BYTES) === 0) continue;
    if (w !== r) out.copyWithin(w * HASH_BYTES, r * HASH_BYTES, (r + 1) * HASH_BYTES);
    w++;
  }
  return out.subarray(0, w * HASH_BYTES);
}

function sortBucket(out: Uint8Array, lo: number, hi: number): void {
  const copy = out.slice(lo * HASH_BYTES, hi * HASH_BYTES);
  const order = Array.from({ length: hi - lo }, (_, k) => k);
  order.sort((x, y) => compareHash(copy, x * HASH_BYTES, copy, y * HASH_BYTES));
  order.forEach((k, i) => {
    out.set(copy.subarray(k * HASH_BYTES, (k + 1) * HASH_BYTES), (lo + i) * HASH_BYTES);
  });
}

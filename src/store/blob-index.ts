import { EntryTable, HASH_BYTES } from './entry-table.js';
import { BLOB_RECORD_BYTES, type DecodedPack, type PackRecord, readU64 } from './index-file.js';

/** Where a blob is: the pack, the offset of its data in the pack's (uncompressed) tar, and its size. */
export interface BlobLocation {
  packId: string;
  offset: number;
  size: number;
}

/** New entries collect in a small sorted table, set aside as a run of its own at this size. */
const DELTA_MAX = 16_384;
/**
 * Runs are merged while they stay this small (2.4 MB each). A first backup of a million blobs added them to
 * the big table, which grew by copies: its old and new arrays together (~65 MB at 1M) were the peak.
 */
const RUN_MAX = 65_536;

/**
 * Which pack holds which blob, for every pack of the store. Sorted tables: the big one (the index files
 * loaded), runs of the packs stored since (each at most RUN_MAX entries, so the index grows without copying
 * the big one), and a small one that takes each stored pack's entries (cheap to merge into).
 * The packs themselves are numbered in an array of records (a few thousand, not a million).
 */
export class BlobIndex {
  private readonly main: EntryTable;
  private delta: EntryTable;
  /** Sorted tables of the packs added this run (addPack), oldest first; none holds a hash another holds. */
  private readonly runs: EntryTable[] = [];
  private readonly packs: PackRecord[] = [];
  private readonly packNumbers = new Map<string, number>();
  private unsorted = false;

  /**
   * `hashesOnly`: which blobs are stored, not where (20 bytes a blob instead of 36: a backup only asks
   * has(); 16 MB less at a million blobs). lookup() and entries() then throw.
   */
  constructor(private readonly o: { hashesOnly?: boolean } = {}) {
    this.main = this.table();
    this.delta = this.table();
  }

  private table(): EntryTable {
    return new EntryTable(0, this.o.hashesOnly);
  }

  /** Number of distinct blobs indexed. */
  get size(): number {
    return this.main.length + this.runs.reduce((n, r) => n + r.length, 0) + this.delta.length;
  }

  /** Bytes the entry tables hold (capacity included). */
  get byteSize(): number {
    return this.main.byteSize + this.runs.reduce((n, r) => n + r.byteSize, 0) + this.delta.byteSize;
  }

  get packCount(): number {
    return this.packs.length;
  }

  pack(id: string): PackRecord | undefined {
    const n = this.packNumbers.get(id);
    return n === undefined ? undefined : this.packs[n];
  }

  has(sha1: Uint8Array): boolean {
    this.seal();
    return (
      this.main.find(sha1) >= 0 || this.runs.some((r) => r.find(sha1) >= 0) || this.delta.find(sha1) >= 0
    );
  }

  lookup(sha1: Uint8Array): BlobLocation | undefined {
    this.seal();
    // Oldest first: a blob indexed twice is where it was first.
    let e: ReturnType<EntryTable['at']> | undefined;
    for (let k = -1; k <= this.runs.length && !e; k++) {
      const t = k < 0 ? this.main : (this.runs[k] ?? this.delta);
      const i = t.find(sha1);
      if (i >= 0) e = t.at(i);
    }
    if (!e) return undefined;
    const p = this.packs[e.pack];
    return p ? { packId: p.id, offset: e.offset, size: e.size } : undefined;
  }

  /**
   * Adds one pack's blobs (after the pack is stored). A blob already indexed keeps its old location.
   * Many packs at once (loading every index file): use bulkLoad, which sorts once.
   */
  addPack(pack: PackRecord, blobs: Iterable<{ sha1: Uint8Array; offset: number; size: number }>): void {
    this.seal();
    const n = this.number(pack);
    const batch = this.table();
    // Only new hashes: no two tables hold the same one (size counts each once).
    for (const b of blobs) if (!this.has(b.sha1)) batch.push(b.sha1, n, b.offset, b.size);
    batch.sort();
    this.delta.mergeFrom(batch);
    if (this.delta.length >= DELTA_MAX) this.setAside();
  }

  /** addPack for a pack whose blobs are index-file records (index-file.ts): no object a blob. */
  addRecords(pack: PackRecord, records: Buffer): void {
    this.seal();
    const n = this.number(pack);
    const batch = this.table();
    for (let o = 0; o + BLOB_RECORD_BYTES <= records.length; o += BLOB_RECORD_BYTES) {
      if (this.has(records.subarray(o, o + HASH_BYTES))) continue;
      batch.pushFrom(records, o, n, readU64(records, o + HASH_BYTES), readU64(records, o + HASH_BYTES + 8));
    }
    batch.sort();
    this.delta.mergeFrom(batch);
    if (this.delta.length >= DELTA_MAX) this.setAside();
  }

  /**
   * Adds packs read from index files: their records (index-file.ts) are appended unsorted to the big table
   * and sorted once, on the next lookup, instead of a merge per pack.
   */
  append(packs: Iterable<DecodedPack>): void {
    for (const { pack, records } of packs) {
      const n = this.number(pack);
      for (let o = 0; o + BLOB_RECORD_BYTES <= records.length; o += BLOB_RECORD_BYTES) {
        this.main.pushFrom(
          records,
          o,
          n,
          readU64(records, o + HASH_BYTES),
          readU64(records, o + HASH_BYTES + 8),
        );
      }
      this.unsorted = true;
    }
  }

  /**
   * The blob's position among the indexed hashes (0 … size - 1), or -1: lets a caller keep one bit a blob
   * (verify's "found good") instead of a set of hashes.
   */
  slot(sha1: Uint8Array): number {
    this.fold();
    return this.main.find(sha1);
  }

  /** The hash at a slot (a view). */
  hashAt(slot: number): Uint8Array {
    this.fold();
    return this.main.hashAt(slot);
  }

  /** Every indexed blob with its pack, in hash order (for sweep and verify). */
  *entries(): Generator<{ sha1: Uint8Array; packId: string; offset: number; size: number }> {
    this.fold();
    for (let i = 0; i < this.main.length; i++) {
      const e = this.main.at(i);
      yield { sha1: e.sha1, packId: this.packs[e.pack]?.id ?? '', offset: e.offset, size: e.size };
    }
  }

  /** Makes room for `n` more appended blobs at once, so loading never regrows (and copies) the table. */
  reserve(n: number): void {
    this.main.reserve(this.main.length + n);
  }

  /** Sorts what append() added; lookups do it themselves. */
  seal(): void {
    if (!this.unsorted) return;
    this.main.sort();
    this.unsorted = false;
  }

  /** The full delta becomes a run; the newest runs are merged while the result stays within RUN_MAX. */
  private setAside(): void {
    this.runs.push(this.delta);
    this.delta = this.table();
    for (let n = this.runs.length; n >= 2; n = this.runs.length) {
      const [a, b] = this.runs.slice(-2) as [EntryTable, EntryTable];
      if (a.length + b.length > RUN_MAX) break;
      a.mergeFrom(b);
      this.runs.pop();
    }
  }

  /** Everything into the big table (entries() and slots need one order). */
  private fold(): void {
    this.seal();
    for (const t of [...this.runs, this.delta]) this.main.mergeFrom(t);
    this.runs.length = 0;
    this.delta.clear();
  }

  private number(pack: PackRecord): number {
    const known = this.packNumbers.get(pack.id);
    if (known !== undefined) return known;
    this.packs.push(pack);
    this.packNumbers.set(pack.id, this.packs.length - 1);
    return this.packs.length - 1;
  }
}

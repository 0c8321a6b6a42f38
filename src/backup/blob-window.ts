import { createReadStream } from 'node:fs';
import { copyFile, statfs } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import type { ManifestBlobs } from '../archive/manifest.js';
import { fileChunks } from '../common/file-chunks.js';
import { LineFile } from '../common/line-file.js';
import { lineSplitter } from '../common/line-splitter.js';
import { formatBlobLine, isListable } from '../store/blob-list.js';
import { BLOB_AREAS } from '../store/layout.js';
import { type LeafSet, LeafTable, leafOf, leafSlotIn } from '../store/leaf-table.js';
import { type Listed, type ListedBlob, listBlobs, listLeafDirs, scanLeaves } from '../store/listing.js';
import type { AddResult } from '../store/pack-writer.js';
import { SharedInodes } from '../store/shared-inodes.js';
import type { PreviousListing } from './listing-cache.js';

/**
 * A dataroot's blob areas change in place only by adding, removing or renaming files, and each of those moves
 * the ctime of the directory they are in. So the stop window need not list every file again: it stats the
 * directories (one call each, ≤ 2 × 65,536 of them) and lists only those that changed since the listing
 * before the stop. A file rewritten in place (Moodle never does) or chmod'ed in that gap keeps what the first
 * listing saw. Measured on 37,000 files in 27,000 directories: 0.06 s against 0.30 s for find over every
 * file, and tar's walk of the leaf directories (0.23 s) is gone too (docs/design.md).
 */

/**
 * A change this long before a listing began is looked at again (git's "racy" entries): a directory changed
 * within one clock tick of being read may show the ctime it had when read. For a file system whose times
 * come from a server's clock (NFS, SMB, FUSE, a VM's share), which may be coarse or skewed, 2 s.
 */
export const SINCE_MARGIN_MS = 2000;

/**
 * On a file system of this kernel the times come from its own clock, a coarse one (a tick: 1–10 ms, behind
 * Date.now() by less than that): 50 ms covers it with room. 2 s there re-listed, inside the stop window,
 * every directory that got a file in the 2 s before the backup began (1,970 directories: 537 ms).
 */
export const LOCAL_SINCE_MARGIN_MS = 50;

/** statfs(2) f_type of file systems whose times this kernel sets from its own clock (linux/magic.h). */
const LOCAL_FS = new Set([
  0xef53, // ext2/3/4
  0x58465342, // xfs
  0x9123683e, // btrfs
  0x01021994, // tmpfs
  0x794c7630, // overlayfs
  0x2fc12fc1, // zfs
  0xf2f52010, // f2fs
  0xca451a4e, // bcachefs
]);

/** The margin for the file system holding `dir`: small on a local one, SINCE_MARGIN_MS otherwise or unknown. */
export async function sinceMarginFor(dir: string): Promise<number> {
  const fs = await statfs(dir).catch(() => null);
  return fs && LOCAL_FS.has(Number(fs.type)) ? LOCAL_SINCE_MARGIN_MS : SINCE_MARGIN_MS;
}

/**
 * A leaf directory no list line can name (a tab, a line break, bytes that are not UTF-8): nothing in it is
 * ever listed, tar walks it whole, and the kept listing has no stamp for it. Looking at it again at every
 * run only cost the run its shortcuts (the whole kept listing copied, the same list said again).
 */
const unlistable = (path: string) => !isListable(path);

/** What the listing before the stop saw, kept in the spool, for the window to reuse what did not change. */
export class PreListing {
  readonly sinceMs: number;
  /** Each leaf directory's ctime when the first listing began. */
  stamps = new LeafTable();
  /**
   * Leaf directories that hold something other than plain blobs (`<sha1>.tmp` while Moodle writes, a
   * blob-shaped symlink, a hard link the tarball keeps): tar walks them, leaving out their plain blobs.
   */
  readonly mixed = new Set<string>();
  readonly mismatches: ManifestBlobs['mismatches'] = [];
  count = 0;
  bytes = 0;
  /** since(): how many lines came from the previous snapshot's listing, and how many directories were listed again. */
  reused: number | undefined;
  changedDirs = 0;
  /** Opened by the first line (since() may first copy the previous listing's lines in). */
  private out: LineFile | undefined;

  constructor(
    readonly file: string,
    /** sinceMarginFor the dataroot: also the window's, for the next backup's baseline. */
    readonly marginMs = SINCE_MARGIN_MS,
    /** Which blobs with several links may go to the store (the run's, for the dataroot listed). */
    private readonly links?: SharedInodes,
  ) {
    this.sinceMs = Date.now() - marginMs;
  }

  private get lines(): LineFile {
    this.out ??= new LineFile(this.file);
    return this.out;
  }

  /** Before the listing: every leaf directory's ctime. */
  async stamp(root: string): Promise<void> {
    this.stamps = (await scanLeaves(root)).stamps;
  }

  /** The listing's plain blobs; anything else at their depth is noted. */
  blobs(root: string, signal?: AbortSignal): AsyncGenerator<ListedBlob> {
    return this.plain(root, listBlobs(root, BLOB_AREAS, { allNames: true }), signal);
  }

  /**
   * Instead of every file: the previous snapshot's lines for the leaf directories whose ctime has not moved
   * since its stop window (their blobs are all stored), written as this listing's own; the plain blobs of the
   * others, listed again, are yielded (the store takes those it lacks).
   */
  async *since(root: string, prev: PreviousListing, signal?: AbortSignal): AsyncGenerator<ListedBlob> {
    await this.stamp(root);
    const { changed, stale } = this.stamps.changedSince(prev.stamps, prev.sinceMs, unlistable);
    for (const m of prev.mixed) if (!stale.has(m)) this.mixed.add(m);
    prev.stamps = new LeafTable(); // not needed any more
    // Nothing changed since: its lines are this listing's, copied whole by the kernel (its counts kept beside
    // them); a million lines through this process were ~90 MB of buffers for the garbage collector.
    const whole = stale.size === 0 && prev.totals;
    this.reused = 0;
    if (whole) {
      await copyFile(prev.linesFile, this.file);
      this.out = new LineFile(this.file, { append: true });
    } else {
      for await (const chunk of keptLines(prev.linesFile, stale)) {
        signal?.throwIfAborted();
        await this.lines.add(chunk.text);
        this.count += chunk.count;
        this.bytes += chunk.bytes;
        this.reused += chunk.count;
        this.mismatches.push(...chunk.mismatches);
      }
    }
    if (whole) {
      this.count += whole.count;
      this.bytes += whole.bytes;
      this.reused = whole.count;
      this.mismatches.push(...whole.mismatches);
    }
    this.changedDirs = changed.size;
    yield* this.plain(root, listLeafDirs(root, changed), signal);
  }

  /** One stored (or known) blob: its line as the blob list will have it. */
  async record(l: ListedBlob, r: AddResult): Promise<void> {
    if (r.status === 'vanished') return; // its directory changed: the window lists it again
    if (r.status === 'mismatch') this.mismatches.push({ path: l.path, claimed: r.claimed, actual: r.actual });
    this.count++;
    this.bytes += l.size;
    await this.lines.add(formatBlobLine({ ...l, sha1: r.sha1 }));
  }

  /** Even with no line, the file exists afterwards (replay reads it). */
  finish(): Promise<void> {
    return this.lines.finish();
  }

  abort(): void {
    this.out?.abort();
  }

  /**
   * The lines of the blobs whose directory is not in `drop`, in chunks, with their count and bytes; all of
   * them without parsing a line when nothing is dropped (then counted 0: the caller has the totals).
   */
  replay(drop?: LeafSet): AsyncGenerator<LineChunk> {
    return keptLines(this.file, drop);
  }

  /** The plain blobs of `source`; anything else marks its directory mixed (tar walks it). */
  private async *plain(
    root: string,
    source: AsyncIterable<Listed>,
    signal?: AbortSignal,
  ): AsyncGenerator<ListedBlob> {
    const links = this.links ?? new SharedInodes(root);
    for await (const l of source) {
      signal?.throwIfAborted();
      if (await links.storable(l)) yield l as ListedBlob;
      else this.mixed.add(leafOf(l.path));
    }
  }
}

/** A chunk of blob lines (whole lines), with the count, bytes and mismatches of those it parsed. */
interface LineChunk {
  text: Buffer;
  count: number;
  bytes: number;
  mismatches: ManifestBlobs['mismatches'];
}

const TAB = 9;
const SLASH = 47;
/** Bytes of kept lines a chunk holds at most (one line more). */
const CHUNK = 1 << 20;

/**
 * A file of blob lines, in chunks: without `drop`, copied whole (nothing parsed or counted); with it, only
 * the lines whose leaf directory it does not hold, each parsed for its size and whether its content is its
 * name. Read and copied as bytes: a string a line for a million lines was garbage V8 kept in the RSS.
 */
async function* keptLines(file: string, drop?: LeafSet): AsyncGenerator<LineChunk> {
  if (!drop) {
    for await (const chunk of createReadStream(file, { highWaterMark: CHUNK }))
      yield { text: chunk as Buffer, count: 0, bytes: 0, mismatches: [] };
    return;
  }
  const fresh = () => ({
    text: Buffer.allocUnsafe(CHUNK),
    used: 0,
    count: 0,
    bytes: 0,
    mismatches: [] as LineChunk['mismatches'],
  });
  let out = fresh();
  const full: LineChunk[] = [];
  const keep = (buf: Buffer, start: number, end: number) => {
    const tab = buf.lastIndexOf(TAB, end);
    const slash = buf.lastIndexOf(SLASH, end);
    if (tab < start || slash < tab) throw new Error(`${file}: malformed line`);
    const leaf = leafSlotIn(buf, tab + 1, slash);
    if (drop.hasSlot(leaf, () => buf.toString('utf8', tab + 1, slash))) return;
    const length = end + 1 - start;
    if (out.used + length > out.text.length) {
      full.push({ ...out, text: out.text.subarray(0, out.used) });
      out = fresh();
    }
    if (length > out.text.length) out.text = Buffer.allocUnsafe(length);
    const nameLength = end - slash - 1;
    if (nameLength !== 40 || buf.compare(buf, start, start + 40, slash + 1, end) !== 0) {
      const path = buf.toString('utf8', tab + 1, end);
      const claimed = path.slice(path.lastIndexOf('/') + 1);
      out.mismatches.push({ path, claimed, actual: buf.toString('latin1', start, start + 40) });
    }
    out.bytes += digits(buf, start + 41);
    out.count++;
    buf.copy(out.text, out.used, start, end + 1);
    out.used += length;
  };
  // Read into one reused buffer, each kept line copied out; only a line a read cuts is joined. A fresh
  // 1 MB chunk a read, and a copy of each to join the cut line, were garbage V8 collects only once ~64 MB
  // of it piled up.
  const lines = lineSplitter(keep);
  for await (const buf of fileChunks(file, CHUNK)) {
    lines.push(buf);
    while (full.length > 0) yield full.shift() as LineChunk;
  }
  if (lines.pending()) throw new Error(`${file}: its last line is cut short`);
  if (out.used > 0) yield { ...out, text: out.text.subarray(0, out.used) };
}

/** The decimal number at `at` (a blob line's size), up to the next tab. */
function digits(buf: Buffer, at: number): number {
  let n = 0;
  for (let i = at; i < buf.length && buf[i] !== TAB; i++) n = n * 10 + ((buf[i] ?? 48) - 48);
  return n;
}

/** What the window found: the directories to list again, the ones gone, and every leaf directory now. */
export interface WindowScan {
  changed: LeafSet;
  /** Leaf directories that changed or are gone: their lines of the first listing are dropped. */
  stale: LeafSet;
  /**
   * Every leaf directory now, with its owner, mode and time (the blob list's directory lines) and its ctime;
   * with when this scan began (less the margin): the next run's baseline.
   */
  stamps: LeafTable;
  sinceMs: number;
  /**
   * Something at depth two that is not a directory, or a leaf directory no list line can name: the tarball
   * keeps it, so the other leaf directories are named.
   */
  strays: boolean;
}

/**
 * The leaf directories now, and which changed since the listing before. One whose name no list line can hold
 * (not UTF-8: find could not even be given its name) is never listed again: it is a stray, and tar walks it
 * whole.
 */
export async function scanWindow(root: string, pre: PreListing): Promise<WindowScan> {
  const sinceMs = Date.now() - pre.marginMs;
  const { stamps, strays } = await scanLeaves(root, { attrs: true });
  const { changed, stale } = stamps.changedSince(pre.stamps, pre.sinceMs, unlistable);
  pre.stamps = new LeafTable(); // not needed any more
  return { changed, stale, strays, stamps, sinceMs };
}

/** The changed directories' plain blobs; a directory there holding anything else is marked mixed. */
export async function relist(
  root: string,
  changed: LeafSet,
  mixed: Set<string>,
  spool: string,
  links: SharedInodes = new SharedInodes(root),
): Promise<{ blobs: () => AsyncGenerator<ListedBlob>; count: number }> {
  // Spooled, one JSON line a blob, until every one is known to be plain: a tenth of a million relisted blobs
  // held as objects (with the find output their strings were sliced from) were ~30 MB of heap.
  const out = new LineFile(spool);
  let count = 0;
  try {
    for (const leaf of changed) mixed.delete(leaf); // seen again below
    for await (const l of listLeafDirs(root, changed)) {
      if (!(await links.storable(l))) mixed.add(leafOf(l.path));
      else {
        count++;
        await out.add(`${JSON.stringify(l)}\n`);
      }
    }
    await out.finish();
  } finally {
    out.abort();
  }
  const blobs = async function* (): AsyncGenerator<ListedBlob> {
    for await (const line of createInterface({ input: createReadStream(spool, { encoding: 'utf8' }) }))
      if (line !== '') yield JSON.parse(line) as ListedBlob;
  };
  return { blobs, count };
}

/**
 * GNU tar options for the tarball when the blob list names the leaf directories: none of them is walked
 * (a pattern), or, when some hold other files, exactly the ones that hold only blobs are left out and the
 * others are walked with their plain blobs left out by path. Those are listed once more here (the stack is
 * stopped or paused: what is there is what the blob list says), so a blob-shaped file the list does not
 * name (a symlink, a hard link the tarball keeps) stays in the tarball: the blobs' shape would leave it out.
 * Online mode (live): a file added to a left-out directory after the scan is not in the snapshot, as a blob
 * added after its listing is not; the snapshot is the dataroot as the scan saw it, taken after the dump.
 */
export async function windowTarArgs(
  root: string,
  scan: WindowScan,
  mixed: Set<string>,
  excludeFile: string,
  links: SharedInodes = new SharedInodes(root),
): Promise<string[]> {
  const walked = [...mixed].filter((m) => scan.stamps.has(m));
  if (walked.length === 0 && !scan.strays)
    return ['--anchored', '--no-wildcards-match-slash', ...BLOB_AREAS.map((a) => `--exclude=./${a}/*/*`)];
  const out = new LineFile(excludeFile);
  try {
    // A directory whose name holds a line break is not named here (nor could it be): tar walks it.
    for (const path of scan.stamps.keys())
      if (!mixed.has(path) && isListable(path)) await out.add(`./${path}\n`);
    // A path no line can hold is not a plain blob: nothing of such a directory is left out.
    for await (const l of listLeafDirs(root, walked.filter(isListable)))
      if (await links.storable(l)) await out.add(`./${l.path}\n`);
    await out.finish();
  } finally {
    out.abort();
  }
  return ['--anchored', '--no-wildcards', `--exclude-from=${excludeFile}`];
}

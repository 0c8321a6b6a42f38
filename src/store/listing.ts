import { spawn } from 'node:child_process';
import { lstat, readdir } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { findTimeMs } from '../common/find-time.js';
import { mergeAsync } from '../common/merge-async.js';
import { collect, exited } from '../common/processes.js';
import { isUndecodable } from '../common/undecodable.js';
import { isListable } from './blob-list.js';
import { BLOB_AREAS, type BlobArea, isSha1Hex } from './layout.js';
import { LeafTable, leafSlotIn } from './leaf-table.js';

/** A file that is a blob: `<area>/xx/yy/<sha1>`, a regular file. */
export interface ListedBlob {
  kind: 'blob';
  area: BlobArea;
  /** Relative to the dataroot, with '/' separators. */
  path: string;
  /** The name, i.e. the SHA-1 Moodle claims for the content (not checked here: nothing is read). */
  sha1: string;
  size: number;
  mode: number;
  uid: number;
  gid: number;
  mtimeMs: number;
  /** Hard links to the file: more than one means another path shares it (see `SharedInodes`). */
  nlink: number;
  /** Its inode number, as find prints it: which other path shares it. */
  ino: string;
}

/**
 * Not a blob, at a blob's depth: shaped like one but not a regular file (a symlink, say), or any other name
 * (Moodle's `<sha1>.tmp` while it writes one). It belongs in the per-snapshot tarball.
 */
export interface ListedOther {
  kind: 'other';
  path: string;
  reason: 'not a regular file' | 'not a blob name' | 'a path a list line cannot hold';
}

export type Listed = ListedBlob | ListedOther;

/** What find's -name matches: a name of 40 lower-case hex digits (Moodle writes them so). */
const HEX40_GLOB = '[0-9a-f]'.repeat(40);
/** Type, size, mode, owner, mtime, links, inode, path; NUL-terminated, so no name can break a record. */
const FORMAT = '%y %s %m %U %G %T@ %n %i %p\\0';

/**
 * Lists the files shaped like blobs (`filedir|trashdir/xx/yy/<40 hex>`) of a dataroot by names and sizes
 * only: no file is opened. GNU find does the walk (about ten times less CPU than a walk in Node, measured on a
 * 37,000-file tree: docs/design.md), streaming its records, so memory holds a chunk at a time whatever the
 * tree's size. A missing area is simply empty. Symlinks are never followed. A file deleted while it is being
 * listed (online mode) is simply not in the list.
 */
export async function* listBlobs(
  root: string,
  areas: readonly BlobArea[] = BLOB_AREAS,
  o: { allNames?: boolean } = {},
): AsyncGenerator<Listed> {
  const present = await presentAreas(root, areas);
  if (present.length === 0) return;
  const names = o.allNames ? [] : ['-name', HEX40_GLOB];
  const args = ['-files0-from', '-', '-mindepth', '2', '-maxdepth', '2', ...names, '-printf', FORMAT];
  // The walk is the kernel's work (a stat a file): split over the cores, it takes half the time on two.
  const groups = await splitAreas(root, present, WALKS_AT_ONCE);
  const chunks = mergeAsync(groups.map((input) => recordChunks(root, args, input)));
  for await (const buf of chunks) yield* parseChunk(buf, parseRecord);
}

/** find processes walking one dataroot at once (200,000 files on 2 cores: 1.04 s with one, 0.50 s with two). */
const WALKS_AT_ONCE = Math.max(1, Math.min(4, availableParallelism()));

/**
 * The areas' first-level directories (`filedir/ab`), dealt into `n` NUL-separated start lists for find, or
 * all in one when there are fewer of them than walks (a small dataroot). Anything else there is not walked, as
 * find from the area did not (a symlink is not followed). Names are kept as bytes: one that is not UTF-8 is
 * walked too. An area that cannot be read fails the listing: its blobs left out of the store would be left
 * out of the tarball too.
 */
async function splitAreas(root: string, areas: readonly BlobArea[], n: number): Promise<Buffer[]> {
  const firsts: Buffer[] = [];
  const NUL = Buffer.from([0]);
  for (const a of areas)
    for (const e of await readdir(join(root, a), { withFileTypes: true, encoding: 'buffer' }).catch(vanished))
      if (e.isDirectory()) firsts.push(Buffer.concat([Buffer.from(`${a}/`), e.name, NUL]));
  if (firsts.length === 0) return [];
  if (n <= 1 || firsts.length < n) return [Buffer.concat(firsts)];
  const groups: Buffer[][] = Array.from({ length: n }, () => []);
  firsts.forEach((f, k) => {
    groups[k % n]?.push(f);
  });
  return groups.map((g) => Buffer.concat(g));
}

/**
 * Every entry of the given leaf directories (`filedir/ab/cd`, relative to `root`), whatever its name: the
 * directories that changed since a first listing. The list goes to find on its standard input.
 */
export async function* listLeafDirs(root: string, leaves: Iterable<string>): AsyncGenerator<Listed> {
  let input = '';
  for (const l of leaves) input += `${l}\0`;
  if (input === '') return;
  yield* records(
    root,
    ['-files0-from', '-', '-mindepth', '1', '-maxdepth', '1', '-printf', FORMAT],
    parseRecord,
    input,
  );
}

async function presentAreas(root: string, areas: readonly BlobArea[]): Promise<BlobArea[]> {
  const present: BlobArea[] = [];
  for (const a of areas) if ((await lstat(join(root, a)).catch(() => null))?.isDirectory()) present.push(a);
  return present;
}

/** What a scan of the leaf directories found (`<area>/ab/cd`, one stat each, no file listed). */
export interface LeafScan {
  /** Every leaf directory's ctime (adding, removing or renaming an entry moves it, and nothing sets it back). */
  stamps: LeafTable;
  /** Something at a leaf's depth that is not a directory, or a leaf directory no list line can name. */
  strays: boolean;
  /** A leaf directory whose name is not UTF-8 (as read here): find cannot be given it to list again. */
  undecodable?: string;
}

const LEAF_FORMAT = '%y %m %U %G %T@ %C@ %p\\0';
const SPACE = 32;
const DOT = 46;

/**
 * The blob areas' leaf directories with their ctimes and, with `attrs`, their owners, modes and mtimes: what
 * the stop window checks instead of listing every file again. find's records are read as bytes straight into
 * the table, without a string and an object a directory for the young generation to collect inside the
 * window (17,000 directories: find ~50 ms of the scan's ~65; a whole 2nd run's CPU 3% lower).
 */
export async function scanLeaves(
  root: string,
  o: { attrs?: boolean; areas?: readonly BlobArea[] } = {},
): Promise<LeafScan> {
  const stamps = new LeafTable();
  const scan: LeafScan = { stamps, strays: false };
  const present = await presentAreas(root, o.areas ?? BLOB_AREAS);
  if (present.length === 0) return scan;
  // As listBlobs: one find a core over the areas' first-level directories (61,000 leaf directories on two
  // cores: 0.12–0.13 s against 0.23–0.25 s for one find; this scan runs inside the stop window).
  const args = ['-files0-from', '-', '-mindepth', '1', '-maxdepth', '1', '-printf', LEAF_FORMAT];
  const groups = await splitAreas(root, present, WALKS_AT_ONCE);
  for await (const buf of mergeAsync(groups.map((input) => recordChunks(root, args, input)))) {
    const f = new FieldCursor(buf);
    for (let at = 0; at < buf.length; ) {
      const end = buf.indexOf(0, at);
      f.at = at;
      const isDir = buf[at] === 100; // 'd'
      f.skip();
      const mode = f.int(8);
      const uid = f.int(10);
      const gid = f.int(10);
      const mtimeMs = f.timeMs();
      const ctimeMs = f.timeMs();
      const slot = leafSlotIn(buf, f.at, end);
      at = end + 1;
      if (!isDir) {
        scan.strays = true;
        continue;
      }
      if (slot >= 0 && o.attrs) stamps.setSlotWith(slot, ctimeMs, mode, uid, gid, mtimeMs);
      else if (slot >= 0) stamps.setSlot(slot, ctimeMs);
      else {
        const name = buf.toString('utf8', f.at, end);
        // No directory line can name it: its attributes come from the tarball, which must then walk it.
        const listable = isListable(name);
        if (!listable) scan.strays = true;
        if (isUndecodable(name)) scan.undecodable ??= name;
        stamps.set(name, ctimeMs, o.attrs && listable ? { mode, uid, gid, mtimeMs } : undefined);
      }
    }
  }
  return scan;
}

/** Reads a find record's space-separated fields in place. */
class FieldCursor {
  at = 0;

  constructor(private readonly buf: Buffer) {}

  skip(): void {
    this.at = this.buf.indexOf(SPACE, this.at) + 1;
  }

  int(base: number): number {
    let n = 0;
    for (let c = this.buf[this.at] ?? SPACE; c !== SPACE; c = this.buf[++this.at] ?? SPACE)
      n = n * base + c - 48;
    this.at++;
    return n;
  }

  /**
   * find's `%T@`/`%C@` (seconds and a fraction of up to 10 digits) in whole ms, rounded down from the digits
   * themselves (as a double, x.123999999 s would round up to the next ms), read in place.
   */
  timeMs(): number {
    const b = this.buf;
    const start = this.at;
    let at = start;
    let sec = 0;
    for (let c = b[at] ?? SPACE; c >= 48 && c <= 57; c = b[++at] ?? SPACE) sec = sec * 10 + c - 48;
    let ms = 0;
    let digits = 0;
    if (b[at] === DOT)
      for (let c = b[++at] ?? SPACE; c >= 48 && c <= 57; c = b[++at] ?? SPACE)
        if (digits < 3) {
          ms = ms * 10 + c - 48;
          digits++;
        }
    for (; digits < 3; digits++) ms *= 10;
    const sp = b.indexOf(SPACE, at);
    this.at = sp + 1;
    // Anything else (a time before 1970 is negative): through the general parse.
    if (at !== sp || at === start) return findTimeMs(b.toString('latin1', start, sp));
    return sec * 1000 + ms;
  }
}

/** The first `n` space-separated fields of a find record, then the rest (a path may hold spaces). */
function splitFields(r: string, n: number): string[] {
  const fields: string[] = [];
  let at = 0;
  for (let i = 0; i < n; i++) {
    const sp = r.indexOf(' ', at);
    fields.push(r.slice(at, sp));
    at = sp + 1;
  }
  fields.push(r.slice(at));
  return fields;
}

/** find's NUL-terminated records, parsed; find runs in `root`. */
export async function* records<T = Listed>(
  root: string,
  args: string[],
  parse: (r: string) => T = parseRecord as unknown as (r: string) => T,
  input?: string,
): AsyncGenerator<T> {
  for await (const buf of recordChunks(root, args, input)) yield* parseChunk(buf, parse);
}

/** One chunk of whole NUL-terminated records, parsed. */
function parseChunk<T>(buf: Buffer, parse: (r: string) => T): T[] {
  return buf
    .toString('utf8', 0, buf.length - 1)
    .split('\0')
    .map(parse);
}

/** find's output in chunks of whole NUL-terminated records; find runs in `root`. */
async function* recordChunks(root: string, args: string[], input?: string | Buffer): AsyncGenerator<Buffer> {
  const child = spawn('find', args, {
    cwd: root,
    stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  });
  if (input !== undefined) {
    child.stdin?.on('error', () => undefined); // find's exit status tells what went wrong
    child.stdin?.end(input);
  }
  const { stdout } = child;
  if (!stdout || !child.stderr) throw new Error('find: no output pipe');
  const stderr = collect(child.stderr);
  // Exit 1 with only "No such file or directory": something vanished during the walk (a live site).
  const done = exited(child, 'find', stderr, (code) => code === 0 || (code === 1 && onlyVanished(stderr())));
  done.catch(() => undefined); // awaited below
  let rest: Buffer | undefined;
  try {
    for await (const chunk of stdout) {
      const buf = rest ? Buffer.concat([rest, chunk as Buffer]) : (chunk as Buffer);
      const last = buf.lastIndexOf(0);
      // A record longer than the chunk: kept whole until its end comes.
      rest = last < buf.length - 1 ? Buffer.from(buf.subarray(last + 1)) : undefined;
      if (last >= 0) yield buf.subarray(0, last + 1);
    }
    await done;
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

/** An area deleted since it was seen (a live site) has nothing to list; any other error is thrown. */
function vanished(err: NodeJS.ErrnoException): [] {
  if (err.code === 'ENOENT') return [];
  throw err;
}

function onlyVanished(text: string): boolean {
  return text
    .trim()
    .split('\n')
    .every((l) => /No such file or directory/.test(l));
}

export function parseRecord(r: string): Listed {
  const [type, size, mode, uid, gid, mtime, nlink, ino, path = ''] = splitFields(r, 8);
  if (!isSha1Hex(path.slice(path.lastIndexOf('/') + 1)))
    return { kind: 'other', path, reason: 'not a blob name' };
  if (type !== 'f') return { kind: 'other', path, reason: 'not a regular file' };
  if (!isListable(path)) return { kind: 'other', path, reason: 'a path a list line cannot hold' };
  return {
    kind: 'blob',
    area: path.startsWith('trashdir/') ? 'trashdir' : 'filedir',
    path,
    sha1: path.slice(-40),
    size: Number(size),
    mode: Number.parseInt(mode ?? '0', 8),
    uid: Number(uid),
    gid: Number(gid),
    mtimeMs: findTimeMs(mtime ?? ''),
    nlink: Number(nlink),
    ino: ino ?? '',
  };
}

import { spawn } from 'node:child_process';
import { lstat } from 'node:fs/promises';
import { join } from 'node:path';
import { collect, exited } from '../common/processes.js';
import { BLOB_AREAS, type BlobArea, isSha1Hex } from './layout.js';

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
  /** Hard links to the file: more than one means another path shares it, which the tarball must keep. */
  nlink: number;
}

/**
 * Not a blob, at a blob's depth: shaped like one but not a regular file (a symlink, say), or any other name
 * (Moodle's `<sha1>.tmp` while it writes one). It belongs in the per-snapshot tarball.
 */
export interface ListedOther {
  kind: 'other';
  path: string;
  reason: 'not a regular file' | 'not a blob name';
}

export type Listed = ListedBlob | ListedOther;

/** What find's -name matches: a name of 40 lower-case hex digits (Moodle writes them so). */
const HEX40_GLOB = '[0-9a-f]'.repeat(40);
/** Type, size, mode, owner, mtime, links, path; NUL-terminated, so no name can break a record. */
const FORMAT = '%y %s %m %U %G %T@ %n %p\\0';

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
  yield* records(root, [...present, '-mindepth', '3', '-maxdepth', '3', ...names, '-printf', FORMAT]);
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

/**
 * An entry of a blob area one or two levels down (`filedir/ab`, `filedir/ab/cd`): what the stop window checks
 * instead of listing every file again. Moodle's layout has only directories there.
 */
export interface ScannedDir {
  depth: number;
  /** find's %y: `d` for a directory. */
  type: string;
  path: string;
  mode: number;
  uid: number;
  gid: number;
  mtimeMs: number;
  /** Adding, removing or renaming an entry moves a directory's ctime, and nothing can set it back. */
  ctimeMs: number;
}

const DIR_FORMAT = '%d %y %m %U %G %T@ %C@ %p\\0';

/** The areas' directories (and anything else) at depths one and two: one stat each, no file listed. */
export async function* scanAreaDirs(
  root: string,
  areas: readonly BlobArea[] = BLOB_AREAS,
): AsyncGenerator<ScannedDir> {
  const present = await presentAreas(root, areas);
  if (present.length === 0) return;
  yield* records(root, [...present, '-mindepth', '1', '-maxdepth', '2', '-printf', DIR_FORMAT], parseDir);
}

export function parseDir(r: string): ScannedDir {
  const [depth, type, mode, uid, gid, mtime, ctime, path] = splitFields(r, 7);
  return {
    depth: Number(depth),
    type: type ?? '',
    path: path ?? '',
    mode: Number.parseInt(mode ?? '0', 8),
    uid: Number(uid),
    gid: Number(gid),
    mtimeMs: Math.floor(Number(mtime) * 1000),
    ctimeMs: Math.floor(Number(ctime) * 1000),
  };
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
async function* records<T = Listed>(
  root: string,
  args: string[],
  parse: (r: string) => T = parseRecord as unknown as (r: string) => T,
  input?: string,
): AsyncGenerator<T> {
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
  let rest = '';
  try {
    for await (const chunk of stdout) {
      const parts = (rest + (chunk as Buffer).toString('utf8')).split('\0');
      rest = parts.pop() ?? '';
      for (const r of parts) yield parse(r);
    }
    await done;
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

function onlyVanished(text: string): boolean {
  return text
    .trim()
    .split('\n')
    .every((l) => /No such file or directory/.test(l));
}

export function parseRecord(r: string): Listed {
  const [type, size, mode, uid, gid, mtime, nlink, path = ''] = splitFields(r, 7);
  if (!isSha1Hex(path.slice(path.lastIndexOf('/') + 1)))
    return { kind: 'other', path, reason: 'not a blob name' };
  if (type !== 'f') return { kind: 'other', path, reason: 'not a regular file' };
  return {
    kind: 'blob',
    area: path.startsWith('trashdir/') ? 'trashdir' : 'filedir',
    path,
    sha1: path.slice(-40),
    size: Number(size),
    mode: Number.parseInt(mode ?? '0', 8),
    uid: Number(uid),
    gid: Number(gid),
    mtimeMs: Math.floor(Number(mtime) * 1000),
    nlink: Number(nlink),
  };
}

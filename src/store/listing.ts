import type { Dirent } from 'node:fs';
import { lstat, opendir } from 'node:fs/promises';
import { join } from 'node:path';
import { BLOB_AREAS, type BlobArea, isSha1Hex } from './layout.js';

/** A file that is a blob: `<area>/ab/cd/<sha1>`, a regular file whose directories match its name. */
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

/** Anything else under filedir/ or trashdir/: it belongs in the per-snapshot tarball. */
export interface ListedOther {
  kind: 'other';
  path: string;
  reason: 'not a regular file' | 'name is not a SHA-1' | 'wrong depth';
}

export type Listed = ListedBlob | ListedOther;

/** How many lstat calls run at once within one directory (the disk's queue, not memory, bounds this). */
const STAT_CONCURRENCY = 32;

/**
 * Lists the blobs of a dataroot's filedir/ and trashdir/ by names and sizes only: no file is opened.
 * Directories are streamed (opendir), so memory holds one directory's entries at a time, whatever the
 * tree's size. A missing area is simply empty. Symlinks are never followed.
 */
export async function* listBlobs(
  root: string,
  areas: readonly BlobArea[] = BLOB_AREAS,
): AsyncGenerator<Listed> {
  for (const area of areas) {
    yield* walk(root, [area], area);
  }
}

async function* walk(root: string, segs: string[], area: BlobArea): AsyncGenerator<Listed> {
  let dir: Awaited<ReturnType<typeof opendir>>;
  try {
    dir = await opendir(join(root, ...segs), { bufferSize: 256 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && segs.length === 1) return;
    throw err;
  }
  let files: Dirent[] = [];
  const subdirs: string[] = [];
  for await (const entry of dir) {
    if (entry.isDirectory()) subdirs.push(entry.name);
    else files.push(entry);
    if (files.length >= STAT_CONCURRENCY) {
      yield* classifyAll(root, segs, area, files);
      files = [];
    }
  }
  yield* classifyAll(root, segs, area, files);
  for (const name of subdirs) yield* walk(root, [...segs, name], area);
}

async function* classifyAll(
  root: string,
  segs: string[],
  area: BlobArea,
  files: Dirent[],
): AsyncGenerator<Listed> {
  const results = await Promise.all(files.map((f) => classify(root, segs, area, f)));
  for (const r of results) if (r) yield r;
}

/** Why this file is not a blob, or null when it is one (judged on the name and the directory entry only). */
export function notABlob(
  segs: readonly string[],
  name: string,
  isFile: boolean,
): ListedOther['reason'] | null {
  if (!isFile) return 'not a regular file';
  if (segs.length !== 3) return 'wrong depth';
  if (!isSha1Hex(name)) return 'name is not a SHA-1';
  // A blob in the wrong directory is still one: stored by its content, put back where it lay.
  return null;
}

async function classify(root: string, segs: string[], area: BlobArea, entry: Dirent): Promise<Listed | null> {
  const path = [...segs, entry.name].join('/');
  const reason = notABlob(segs, entry.name, entry.isFile());
  if (reason) return { kind: 'other', path, reason };
  let st: Awaited<ReturnType<typeof lstat>>;
  try {
    st = await lstat(join(root, path));
  } catch (err) {
    // Moodle deleted it (or moved it to trashdir) while we listed: it is not part of this snapshot.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  if (!st.isFile()) return { kind: 'other', path, reason: 'not a regular file' };
  return {
    kind: 'blob',
    area,
    path,
    sha1: entry.name,
    size: st.size,
    mode: st.mode & 0o7777,
    uid: st.uid,
    gid: st.gid,
    mtimeMs: st.mtimeMs,
    nlink: st.nlink,
  };
}

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { type FileHandle, open, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { HashTap } from '../archive/tap.js';
import { SidecarError } from '../common/errors.js';
import { lineSplitter } from '../common/line-splitter.js';
import { exited, firstCause, stderrLines, stopper } from '../common/processes.js';
import type { Backend } from '../storage/backend.js';
import type { StoreEncoding } from './encoding.js';
import type { PackRecord } from './index-file.js';
import { blobPath, isBlobPath, isSha1Hex, packKey } from './layout.js';
import { asIntegrity, packDecrypter } from './pack-reader.js';
import { sha256OfHandle } from './store-io.js';

/** A member as `tar -xvv --full-time --numeric-owner` lists it (on stdout), times in UTC. */
export interface UntarredMember {
  mode: number;
  uid: number;
  gid: number;
  /** Whole seconds: what a tar header holds. */
  mtimeS: number;
  size: number;
}

const SPACE = 32;

/** The mode bit each of the nine permission columns of `ls -l` stands for. */
const PERMS = [0o400, 0o200, 0o100, 0o40, 0o20, 0o10, 0o4, 0o2, 0o1];

/** The mode bits of `rwxr-x---` (9 bytes at `at`), set-id and sticky bits from the execute columns. */
function modeBitsAt(buf: Buffer, at: number): number | null {
  let m = 0;
  for (let i = 0; i < 9; i++) {
    const c = String.fromCharCode(buf[at + i] as number);
    if (c === '-') continue;
    const col = i % 3;
    if (col === 0 && c === 'r') m |= PERMS[i] as number;
    else if (col === 1 && c === 'w') m |= PERMS[i] as number;
    else if (col === 2 && c === 'x') m |= PERMS[i] as number;
    else if (col === 2 && (c === 's' || c === 'S') && i < 8) {
      m |= i === 2 ? 0o4000 : 0o2000;
      if (c === 's') m |= PERMS[i] as number;
    } else if (i === 8 && (c === 't' || c === 'T')) {
      m |= 0o1000;
      if (c === 't') m |= PERMS[i] as number;
    } else return null;
  }
  return m;
}

/** The decimal number at `at` up to `stop` (exclusive), or -1 when a byte there is not a digit. */
function decimal(buf: Buffer, at: number, stop: number): number {
  if (at >= stop) return -1;
  let n = 0;
  for (let i = at; i < stop; i++) {
    const c = (buf[i] as number) - 48;
    if (c < 0 || c > 9) return -1;
    n = n * 10 + c;
  }
  return n;
}

/**
 * One line of `tar -xvv --full-time --numeric-owner` (a regular file:
 * `-rw-r----- 33/33  1234 2026-12-06 08:13:05 filedir/ab/cd/<sha1>`) read as bytes into its member and
 * the SHA-1 its name ends with; null for any other line. A string, a regex match and a date string a line
 * were a million members' garbage in a full restore, which kept V8's heap ~15 MB above its live size.
 */
export function parseListed(
  buf: Buffer,
  start: number,
  end: number,
): { sha1: string; member: UntarredMember } | null {
  if (buf[start] !== 45 /* - */ || end - start < 10 + 1 + 3 + 1 + 1 + 1 + 19 + 1 + 40) return null;
  const mode = modeBitsAt(buf, start + 1);
  if (mode === null || buf[start + 10] !== SPACE) return null;
  let at = start + 11;
  const slash = buf.indexOf(47 /* / */, at);
  const afterGid = buf.indexOf(SPACE, at);
  if (slash < 0 || afterGid < 0 || slash > afterGid || afterGid >= end) return null;
  const uid = decimal(buf, at, slash);
  const gid = decimal(buf, slash + 1, afterGid);
  at = afterGid;
  while (at < end && buf[at] === SPACE) at++;
  const afterSize = buf.indexOf(SPACE, at);
  if (afterSize < 0 || afterSize >= end) return null;
  const size = decimal(buf, at, afterSize);
  // `YYYY-MM-DD HH:MM:SS ` then the name.
  const d = afterSize + 1;
  if (d + 20 > end || buf[d + 4] !== 45 || buf[d + 7] !== 45 || buf[d + 10] !== SPACE) return null;
  if (buf[d + 13] !== 58 || buf[d + 16] !== 58 || buf[d + 19] !== SPACE) return null;
  const y = decimal(buf, d, d + 4);
  const mo = decimal(buf, d + 5, d + 7);
  const day = decimal(buf, d + 8, d + 10);
  const h = decimal(buf, d + 11, d + 13);
  const mi = decimal(buf, d + 14, d + 16);
  const sec = decimal(buf, d + 17, d + 19);
  // Each is -1 when not digits; the date's fields fit in 32 bits, so one OR tells.
  if (uid < 0 || gid < 0 || size < 0 || (y | mo | day | h | mi | sec) < 0) return null;
  if (end - (d + 20) < 40) return null;
  const mtimeS = Date.UTC(y, mo - 1, day, h, mi, sec) / 1000;
  return { sha1: buf.toString('latin1', end - 40, end), member: { mode, uid, gid, size, mtimeS } };
}

/** tar's listing on stdout, chunk by chunk, into `members` (by SHA-1). */
export function listedInto(members: Map<string, UntarredMember>): (chunk: Buffer) => void {
  const lines = lineSplitter((buf, start, end) => {
    const r = parseListed(buf, start, end);
    if (r) members.set(r.sha1, r.member);
  });
  return (chunk) => lines.push(chunk);
}

/** Decompressors as commands: the pack's bytes go from this process into them, tar reads their output. */
const DECOMPRESS: Record<string, string[] | null> = {
  zstd: ['zstd', '-d', '-q', '-c'],
  gzip: ['gzip', '-d', '-c'],
  none: null,
};

/**
 * Unpacks the named blobs of one pack into `dir` (each as `<sha1>`, no directories) with the decompressor and GNU
 * tar: the files are written by tar, not by this process a write call at a time (a full restore of 20,000
 * blobs: most of its time went there). This process reads the stored bytes once, for the pack's sha256
 * (and age, when encrypted). Resolves only when that sha256 is the pack's id: a damaged or changed pack
 * rejects with INTEGRITY_FAILED, and the caller must then discard `dir`, where nothing has its final name.
 */
export async function untarPack(o: {
  backend: Backend;
  encoding: StoreEncoding;
  pack: PackRecord;
  sha1s: Iterable<string>;
  dir: string;
  signal?: AbortSignal;
  /**
   * Into `dir` at their own places (`filedir/ab/cd/<sha1>`), not flat: for a staging directory, which is
   * discarded whole when the pack turns out damaged. The member list then goes to `listDir`. `placeAs`
   * names another place (relative to `dir`) for some blobs: one in trashdir/ only, a corrupt file's name.
   */
  inPlace?: { listDir: string; placeAs?: ReadonlyMap<string, string> };
}): Promise<Map<string, UntarredMember>> {
  const list = join(o.inPlace?.listDir ?? o.dir, `.members-${randomBytes(6).toString('hex')}`);
  await writeFile(list, [...o.sha1s].map((h) => `${blobPath(h)}\0`).join(''), { mode: 0o600 });
  try {
    return await untar(o, list);
  } finally {
    await rm(list, { force: true });
  }
}

/** Names per alternation: one argument stays far below the kernel's 128 KiB bound on a single one. */
const ALTERNATION = 1000;

/**
 * `--transform`s for the blobs placed elsewhere than their own place (tar matches members by their stored
 * names): those going to their trashdir/ place in alternations of names (one regex: 256 names cost tar
 * ~10 ms on 10,000 members, 256 expressions of one name ~300 ms), any other one an expression of its own.
 */
function placeAsArgs(placeAs: ReadonlyMap<string, string> | undefined): string[] {
  const args: string[] = [];
  const trash: string[] = [];
  for (const [sha1, path] of placeAs ?? []) {
    if (!isSha1Hex(sha1) || !isBlobPath(path)) throw new Error(`cannot place ${sha1} at ${path}`);
    if (path === blobPath(sha1, 'trashdir')) trash.push(path.slice('trashdir/'.length));
    else args.push(`--transform=s,^${blobPath(sha1)}$,${path},`);
  }
  for (let n = 0; n < trash.length; n += ALTERNATION) {
    const names = trash.slice(n, n + ALTERNATION).join('\\|');
    args.push(`--transform=s,^filedir/\\(${names}\\)$,trashdir/\\1,`);
  }
  return args;
}

async function untar(o: Parameters<typeof untarPack>[0], list: string): Promise<Map<string, UntarredMember>> {
  const decompress = DECOMPRESS[o.pack.codec] ?? null;
  // A pack that is a local file and not encrypted: the decompressor reads it itself, this process only
  // hashes it (1 GB of packs through a pipe cost ~0.6 s of this process's CPU in write calls alone).
  const file = decompress && !o.pack.encrypted ? await openLocal(o.backend, packKey(o.pack.id)) : null;
  try {
    return await untarFrom(o, list, decompress, file);
  } finally {
    await file?.close();
  }
}

/** The object as an open local file, or null (not a local backend, or not there: get() then says why). */
async function openLocal(backend: Backend, key: string): Promise<FileHandle | null> {
  const path = backend.localPath?.(key);
  return path ? open(path, 'r').catch(() => null) : null;
}

async function untarFrom(
  o: Parameters<typeof untarPack>[0],
  list: string,
  decompress: string[] | null,
  file: FileHandle | null,
): Promise<Map<string, UntarredMember>> {
  const owner = process.getuid?.() === 0;
  const tar = spawn(
    'tar',
    [
      '-x',
      '-C',
      o.dir,
      '-vv',
      '--full-time',
      '--numeric-owner',
      '-p',
      ...(owner ? ['--same-owner'] : ['--no-same-owner']),
      '--no-recursion',
      // Flat, as <sha1>: a directory per blob (Moodle's ab/cd/) cost a mkdir and an rmdir a file.
      ...(o.inPlace ? placeAsArgs(o.inPlace.placeAs) : ['--transform=s,^filedir/[^/]*/[^/]*/,,']),
      '--null',
      '--verbatim-files-from',
      '-T',
      list,
      '-f',
      '-',
    ],
    { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C', TZ: 'UTC' } },
  );
  const z = decompress
    ? spawn(decompress[0] as string, decompress.slice(1), {
        stdio: [file?.fd ?? 'pipe', tar.stdin ?? 'ignore', 'pipe'],
      })
    : null;
  if (z) tar.stdin?.destroy(); // the decompressor is tar's only writer
  const input = (z ?? tar).stdin as NodeJS.WritableStream;
  const members = new Map<string, UntarredMember>();
  tar.stdout?.on('data', listedInto(members));
  const tarErr = stderrLines(tar, () => false);
  const zErr = z ? stderrLines(z, () => false) : () => '';
  const { stop, killed } = stopper([tar, z]);
  const tarDone = exited(tar, 'tar', tarErr);
  const zDone = z ? exited(z, 'decompressing', zErr) : Promise.resolve(0);
  tarDone.catch(stop);
  zDone.catch(stop);
  let digest = '';
  const fed = file
    ? sha256OfHandle(file, o.signal).then((r) => {
        digest = r.id;
      })
    : feed(o, input).then((id) => {
        digest = id;
      });
  const [f, t, c] = await Promise.allSettled([fed, tarDone, zDone]);
  const fedErr = f.status === 'rejected' ? (f.reason as Error) : undefined;
  // The store's own errors (not found, no key) first; else the processes' cause, else the feed's.
  const cause =
    (fedErr instanceof SidecarError ? fedErr : undefined) ??
    firstCause(t, c, killed(tar), killed(z)) ??
    fedErr;
  if (cause) {
    stop();
    throw asIntegrity(cause, o.pack.id);
  }
  if (digest !== o.pack.id) {
    throw new SidecarError(
      'INTEGRITY_FAILED',
      `pack ${o.pack.id} in ${o.backend.location} does not match its id (sha256 ${digest})`,
      'the stored pack was changed or damaged; nothing of it was put in place',
    );
  }
  return members;
}

/** The stored bytes through this process into the decompressor (or tar): their sha256. */
async function feed(o: Parameters<typeof untarPack>[0], input: NodeJS.WritableStream): Promise<string> {
  const tap = new HashTap();
  const decrypt = o.pack.encrypted ? [packDecrypter(o.encoding, o.pack.id)] : [];
  await pipeline(
    [await o.backend.get(packKey(o.pack.id)), tap, ...decrypt, input as unknown as Writable],
    o.signal ? { signal: o.signal } : {},
  );
  return tap.digest();
}

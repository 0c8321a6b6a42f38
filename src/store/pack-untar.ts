import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { type FileHandle, open, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { HashTap } from '../archive/tap.js';
import { SidecarError } from '../common/errors.js';
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

const LISTED = /^-([-rwxsStT]{9}) (\d+)\/(\d+) +(\d+) (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (.*)$/;

/** Decompressors as commands: the pack's bytes go from this process into them, tar reads their output. */
const DECOMPRESS: Record<string, string[] | null> = {
  zstd: ['zstd', '-d', '-q', '-c'],
  gzip: ['gzip', '-d', '-c'],
  none: null,
};

function modeBits(rwx: string): number {
  let m = 0;
  const bit = (i: number, set: string) => (set.includes(rwx[i] as string) ? 1 : 0);
  for (let i = 0; i < 9; i++) m = (m << 1) | bit(i, i % 3 === 0 ? 'r' : i % 3 === 1 ? 'w' : 'xsSt');
  // Set-id and sticky bits show in the execute columns.
  if ('sS'.includes(rwx[2] as string)) m |= 0o4000;
  if ('sS'.includes(rwx[5] as string)) m |= 0o2000;
  if ('tT'.includes(rwx[8] as string)) m |= 0o1000;
  if ('S'.includes(rwx[2] as string)) m &= ~0o100;
  if ('S'.includes(rwx[5] as string)) m &= ~0o010;
  if ('T'.includes(rwx[8] as string)) m &= ~0o001;
  return m;
}

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
  let rest = '';
  tar.stdout?.on('data', (d: Buffer) => {
    const lines = (rest + d.toString('utf8')).split('\n');
    rest = lines.pop() ?? '';
    for (const line of lines) {
      const m = LISTED.exec(line);
      const sha1 = m?.[6]?.slice(-40);
      if (!m || !sha1) continue;
      members.set(sha1, {
        mode: modeBits(m[1] as string),
        uid: Number(m[2]),
        gid: Number(m[3]),
        size: Number(m[4]),
        mtimeS: Date.parse(`${(m[5] as string).replace(' ', 'T')}Z`) / 1000,
      });
    }
  });
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

import { type ChildProcess, spawn } from 'node:child_process';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { throwFirstCause } from '../common/errors.js';
import { collect, exited } from '../common/processes.js';
import type { LeafTable } from '../store/leaf-table.js';
import { dirEntry, END_OF_ARCHIVE } from '../store/tar-header.js';

/** Directory entries per chunk written to tar. */
const BATCH = 256;

/**
 * The blob list's leaf directories made, before any blob is unpacked, by one `mkdir -p` (xargs): two packs
 * unpack at once, and GNU tar does not retry a file whose missing directory the other tar made between its
 * open and its mkdir ("Cannot open: No such file or directory", seen in the bench on 200,000 files).
 */
export async function createLeafDirs(into: string, leaves: LeafTable, signal?: AbortSignal): Promise<void> {
  if (leaves.size === 0) return;
  const mkdir = spawn('xargs', ['-0', '-r', 'mkdir', '-p', '--'], {
    cwd: into,
    stdio: ['pipe', 'ignore', 'pipe'],
  });
  const stderr = collect(mkdir.stderr);
  const done = exited(mkdir, 'mkdir -p', stderr);
  const names = Readable.from(
    (function* () {
      let batch = '';
      for (const path of leaves.keys()) {
        batch += `${path}\0`;
        if (batch.length < 65536) continue;
        yield batch;
        batch = '';
      }
      if (batch) yield batch;
    })(),
  );
  await feed(names, mkdir, done, signal);
}

/**
 * The blob list's leaf directories given their owners, modes and times to the millisecond (and made, if
 * missing), by one `tar -x` of directory entries built here. 68,700 directories took ~3.3 s as a mkdir each
 * before and a chown, chmod and utimes each after, through this process's thread pool (docs/design.md).
 * Call it once every blob is in: tar sets each time last.
 */
export async function makeLeafDirs(into: string, leaves: LeafTable, signal?: AbortSignal): Promise<void> {
  if (leaves.size === 0) return;
  // As root tar keeps the entries' owners (its default then); -p: the modes as listed, not the umask's.
  const tar = spawn('tar', ['-x', '-C', into, '--numeric-owner', '-p', '-f', '-'], {
    stdio: ['pipe', 'ignore', 'pipe'],
  });
  const stderr = collect(tar.stderr);
  const done = exited(tar, 'tar', stderr);
  const entries = Readable.from(
    (function* () {
      let batch: Buffer[] = [];
      for (const [name, , a] of leaves.entries()) {
        if (!a) continue; // a table of the blob list's directory lines has every one's attributes
        batch.push(dirEntry({ name, mode: a.mode, uid: a.uid, gid: a.gid, mtimeMs: a.mtimeMs }));
        if (batch.length < BATCH) continue;
        yield Buffer.concat(batch);
        batch = [];
      }
      if (batch.length > 0) yield Buffer.concat(batch);
      yield END_OF_ARCHIVE;
    })(),
  );
  await feed(entries, tar, done, signal);
}

/** `input` into the child's stdin; the child killed if the feed fails; either failure thrown. */
async function feed(
  input: Readable,
  child: ChildProcess,
  done: Promise<unknown>,
  signal: AbortSignal | undefined,
): Promise<void> {
  const fed = pipeline(input, child.stdin as Writable, signal ? { signal } : {}).catch((err: unknown) => {
    child.kill('SIGKILL');
    throw err;
  });
  throwFirstCause(await Promise.allSettled([fed, done]));
}

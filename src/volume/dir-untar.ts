import { spawn } from 'node:child_process';
import { chmod, chown, rm, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { type Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { TarStats } from '../archive/tar-guard.js';
import { SidecarError } from '../common/errors.js';
import { secondsTime } from '../common/file-time.js';
import { collect, exited } from '../common/processes.js';

/**
 * The `mount` write path: GNU tar unpacks a stream (already through the tar guard) into an empty
 * directory (restore's staging directory, volume/swap.ts) with the archive's numeric owners and exact modes. Resolves once tar has exited 0 and the
 * stream has been read to its end (the caller's sha256 re-check needs every byte).
 */
export async function extractToDir(dir: string, tar: Readable): Promise<void> {
  const child = spawn(
    'tar',
    ['-C', dir, '-x', '--numeric-owner', '-p', '--same-owner', '--no-overwrite-dir', '-f', '-'],
    { stdio: ['pipe', 'ignore', 'pipe'] },
  );
  const done = exited(child, 'tar', collect(child.stderr)).then(
    () => undefined,
    (err: Error) => {
      throw writeError(dir, err.message);
    },
  );
  const feed = stdinFeed(child.stdin);
  done.catch((err: Error) => feed.destroy(err));
  try {
    await pipeline(tar, feed);
  } catch (err) {
    // A feed error (guard refusal, corrupt stream) stops tar at once: it must not finish a half archive.
    if (child.exitCode === null) child.kill('SIGKILL');
    await done.catch(() => undefined);
    throw err;
  }
  await done;
}

/**
 * Writes into tar's stdin with back-pressure. GNU tar exits at the end-of-archive marker without reading
 * the zero padding behind it; what arrives after tar closed its stdin is that padding and is discarded
 * (tar's exit status decides success), instead of failing the stream with EPIPE / premature close.
 */
function stdinFeed(stdin: NodeJS.WritableStream & { destroyed?: boolean }): Writable {
  let closed = false;
  let waiting: (() => void) | undefined;
  const release = () => {
    closed = true;
    const cb = waiting;
    waiting = undefined;
    cb?.();
  };
  stdin.on('error', release);
  stdin.on('close', release);
  return new Writable({
    write(chunk: Buffer, _enc, cb) {
      if (closed) return cb();
      if (stdin.write(chunk)) return cb();
      waiting = cb;
      stdin.once('drain', () => {
        if (waiting === cb) {
          waiting = undefined;
          cb();
        }
      });
    },
    final(cb) {
      if (!closed) stdin.end();
      cb();
    },
  });
}

/**
 * Empties a directory, dotfiles included, without following symlinks; the directory itself stays. Restore's
 * fallback when the volume has no room for a staged copy (restore/mount.ts).
 */
export async function emptyDir(dir: string): Promise<void> {
  await findDelete([dir, '-mindepth', '1']).catch((err: Error) => {
    throw writeError(dir, `emptying failed: ${err.message}`);
  });
}

/** `find <args> -delete`: deletes without following symlinks. */
export async function findDelete(args: string[]): Promise<void> {
  const child = spawn('find', [...args, '-delete'], { stdio: ['ignore', 'ignore', 'pipe'] });
  await exited(child, 'find', collect(child.stderr));
}

/**
 * The directory twin of restore's finishScript: drop a leftover maintenance flag and give the mount point the
 * archive's recorded owner, mode and mtime (`--no-overwrite-dir` left it alone, like putArchive does).
 */
export async function finishDir(dir: string, root?: TarStats['root']): Promise<void> {
  await rm(join(dir, 'climaintenance.html'), { force: true });
  if (!root) return;
  // chown first: it clears setgid, which chmod then sets again.
  await chown(dir, root.uid, root.gid);
  await chmod(dir, root.mode);
  await utimes(dir, secondsTime(root.mtime), secondsTime(root.mtime));
}

function writeError(dir: string, detail: string): SidecarError {
  return new SidecarError('RESTORE_FAILED', `writing volume directory ${dir} failed: ${detail}`);
}

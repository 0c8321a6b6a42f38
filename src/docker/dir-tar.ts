import { spawn } from 'node:child_process';
import { chmod, chown, rm, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline as pipe, type Readable, Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { TarStats } from '../archive/tar-guard.js';
import { SidecarError } from '../errors.js';
import { type ReadVolumeOptions, withExcludes } from './volumes.js';

/**
 * The `mount` read path: a volume's directory as a tar stream made by GNU tar, rooted at `./` like the
 * getArchive path (restore and the tar guard normalise `./x` and `x` alike). GNU format, numeric owners,
 * no xattrs: Docker's archives carry none a restore needs, and both paths' archives must restore either way.
 * The stream ends only after tar has exited successfully, so a failed read can never pass for a complete
 * archive. Exit 1 ("file changed as we read it", only possible when the stack keeps running) is a warning.
 */
export function readDirTar(
  dir: string,
  opts: ReadVolumeOptions & { onWarning?: (message: string) => void } = {},
): Readable {
  const child = spawn('tar', ['-C', dir, '-c', '--numeric-owner', '--format=gnu', '-f', '-', '.'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stderr = collect(child.stderr);
  const exited = new Promise<void>((resolve, reject) => {
    child.once('error', (err) => reject(tarError('read', dir, err.message)));
    child.once('close', (code, signal) => {
      if (code === 0) return resolve();
      if (code === 1) {
        opts.onWarning?.(`tar reading ${dir}: ${stderr().trim()}`);
        return resolve();
      }
      reject(tarError('read', dir, `tar exited with ${code ?? signal}: ${stderr().trim()}`));
    });
  });
  const out = new Transform({
    transform(chunk, _enc, cb) {
      cb(null, chunk);
    },
    flush(cb) {
      exited.then(() => cb(), cb);
    },
  });
  exited.catch((err: Error) => out.destroy(err));
  out.once('close', () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  pipe(child.stdout, out, () => undefined);
  return withExcludes(out, opts);
}

/**
 * The `mount` write path: GNU tar unpacks a stream (already through the tar guard) into an emptied
 * directory with the archive's numeric owners and exact modes. Resolves once tar has exited 0 and the
 * stream has been read to its end (the caller's sha256 re-check needs every byte).
 */
export async function extractToDir(dir: string, tar: Readable): Promise<void> {
  const child = spawn(
    'tar',
    ['-C', dir, '-x', '--numeric-owner', '-p', '--same-owner', '--no-overwrite-dir', '-f', '-'],
    { stdio: ['pipe', 'ignore', 'pipe'] },
  );
  const stderr = collect(child.stderr);
  const exited = new Promise<void>((resolve, reject) => {
    child.once('error', (err) => reject(tarError('write', dir, err.message)));
    child.once('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(tarError('write', dir, `tar exited with ${code ?? signal}: ${stderr().trim()}`));
    });
  });
  const feed = stdinFeed(child.stdin);
  exited.catch((err: Error) => feed.destroy(err));
  try {
    await pipeline(tar, feed);
  } catch (err) {
    // A feed error (guard refusal, corrupt stream) stops tar at once: it must not finish a half archive.
    if (child.exitCode === null) child.kill('SIGKILL');
    await exited.catch(() => undefined);
    throw err;
  }
  await exited;
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

/** Empties a directory, dotfiles included, without following symlinks; the directory itself stays. */
export function emptyDir(dir: string): Promise<void> {
  const child = spawn('find', [dir, '-mindepth', '1', '-delete'], { stdio: ['ignore', 'ignore', 'pipe'] });
  const stderr = collect(child.stderr);
  return new Promise((resolve, reject) => {
    child.once('error', (err) => reject(tarError('write', dir, err.message)));
    child.once('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(tarError('write', dir, `emptying failed (${code ?? signal}): ${stderr().trim()}`));
    });
  });
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
  await utimes(dir, root.mtime, root.mtime);
}

function collect(stream: NodeJS.ReadableStream): () => string {
  let text = '';
  stream.on('data', (d: Buffer) => {
    if (text.length < 4096) text += d.toString();
  });
  return () => text.slice(0, 4096);
}

function tarError(use: 'read' | 'write', dir: string, detail: string): SidecarError {
  return use === 'read'
    ? new SidecarError('STORAGE_FAILED', `reading volume directory ${dir} failed: ${detail}`)
    : new SidecarError('RESTORE_FAILED', `writing volume directory ${dir} failed: ${detail}`);
}

import { spawn } from 'node:child_process';
import { pipeline as pipe, type Readable } from 'node:stream';
import { SidecarError } from '../common/errors.js';
import { collect, endsAfter, exited } from '../common/processes.js';
import { type ReadVolumeOptions, withExcludes } from './archive-api.js';

/** How GNU tar reads a volume directory on both mount read paths (readDirTar, dir-tar-compressed.ts). */
export function tarReadOptions(dir: string): string[] {
  return ['-C', dir, '-c', '--numeric-owner', '--format=gnu'];
}

/**
 * The `mount` read path: a volume's directory as a tar stream made by GNU tar, rooted at `./` like the
 * getArchive path (restore and the tar guard normalise `./x` and `x` alike). GNU format, numeric owners,
 * no xattrs: Docker's archives carry none a restore needs, and both paths' archives must restore either way.
 * The stream ends only after tar has exited successfully, so a failed read can never pass for a complete
 * archive. Exit 1 ("file changed as we read it", only possible when the stack keeps running) is a warning.
 */
export function readDirTar(
  dir: string,
  opts: ReadVolumeOptions & { onWarning?: (message: string) => void; tarArgs?: string[] } = {},
): Readable {
  const child = spawn('tar', [...tarReadOptions(dir), ...(opts.tarArgs ?? []), '-f', '-', '.'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stderr = collect(child.stderr);
  const done = exited(child, 'tar', stderr, (code) => code === 0 || code === 1).then(
    (code) => {
      if (code === 1) opts.onWarning?.(`tar reading ${dir}: ${stderr().trim()}`);
    },
    (err: Error) => {
      throw readError(dir, err.message);
    },
  );
  const out = endsAfter(done, () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  pipe(child.stdout, out, () => undefined);
  return withExcludes(out, opts);
}

/** A failed read of a volume's directory, on either mount read path. */
export function readError(dir: string, detail: string): SidecarError {
  return new SidecarError('STORAGE_FAILED', `reading volume directory ${dir} failed: ${detail}`);
}

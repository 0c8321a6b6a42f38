import { spawn } from 'node:child_process';
import { pipeline as pipe, type Readable, Transform } from 'node:stream';
import { SidecarError } from '../errors.js';
import { collect } from './stderr-tail.js';
import { type ReadVolumeOptions, withExcludes } from './volumes.js';

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
  opts: ReadVolumeOptions & { onWarning?: (message: string) => void } = {},
): Readable {
  const child = spawn('tar', [...tarReadOptions(dir), '-f', '-', '.'], {
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
  const out = endsAfter(exited, () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  pipe(child.stdout, out, () => undefined);
  return withExcludes(out, opts);
}

function tarError(_use: 'read', dir: string, detail: string): SidecarError {
  return new SidecarError('STORAGE_FAILED', `reading volume directory ${dir} failed: ${detail}`);
}

/**
 * A pass-through that ends only once `done` resolves (the producing processes exited well) and fails with
 * its error otherwise: a process that dies after writing part of its output never passes for complete.
 * `onClose` runs when the stream closes for any reason (the consumer gave up): nothing may keep running.
 */
export function endsAfter(done: Promise<void>, onClose: () => void): Transform {
  const out = new Transform({
    transform(chunk, _enc, cb) {
      cb(null, chunk);
    },
    flush(cb) {
      done.then(() => cb(), cb);
    },
  });
  done.catch((err: Error) => out.destroy(err));
  out.once('close', onClose);
  return out;
}

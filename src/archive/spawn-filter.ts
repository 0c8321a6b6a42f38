import { spawn } from 'node:child_process';
import { Duplex, Transform } from 'node:stream';

/**
 * A child process as a stream filter (stdin → stdout). Its output only ends once the process has exited
 * with status 0, so a failing compressor can never pass for a complete archive; a non-zero exit or a
 * missing binary destroys the stream with an error that carries the tool's stderr.
 */
export function spawnFilter(cmd: string, args: string[]): Duplex {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    if (stderr.length < 4096) stderr += d.toString();
  });
  const exited = new Promise<void>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => {
      if (code === 0) resolve();
      else
        reject(new Error(`${cmd} exited with ${code ?? signal}${stderr.trim() ? `: ${stderr.trim()}` : ''}`));
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
  child.stdout.pipe(out);
  const duplex = Duplex.from({ writable: child.stdin, readable: out });
  exited.catch((err: Error) => duplex.destroy(err));
  duplex.once('close', () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return duplex;
}

import { spawn } from 'node:child_process';
import { Duplex } from 'node:stream';
import { collect, endsAfter, exited } from '../common/processes.js';

/**
 * A child process as a stream filter (stdin → stdout). Its output only ends once the process has exited
 * with status 0, so a failing compressor can never pass for a complete archive; a non-zero exit or a
 * missing binary destroys the stream with an error that carries the tool's stderr.
 */
export function spawnFilter(cmd: string, args: string[]): Duplex {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  const done = exited(child, cmd, collect(child.stderr));
  const kill = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  const out = endsAfter(done, kill);
  child.stdout.pipe(out);
  const duplex = Duplex.from({ writable: child.stdin, readable: out });
  done.catch((err: Error) => duplex.destroy(err));
  duplex.once('close', kill);
  return duplex;
}

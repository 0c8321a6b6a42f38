import { PassThrough } from 'node:stream';
import type Docker from 'dockerode';

export interface ExecCapture {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs a command in a running container and collects its (small) output; bounded to `timeoutMs`. `user`
 * (name, uid or uid:gid) overrides the container's user, e.g. to run Moodle's CLI as the web server does.
 */
export async function execCapture(
  docker: Docker,
  container: string,
  cmd: string[],
  timeoutMs = 60_000,
  user?: string,
): Promise<ExecCapture> {
  const exec = await docker
    .getContainer(container)
    .exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true, ...(user ? { User: user } : {}) });
  const stream = await exec.start({ hijack: true, stdin: false });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const o = new PassThrough();
  const e = new PassThrough();
  o.on('data', (d: Buffer) => out.push(d));
  e.on('data', (d: Buffer) => err.push(d));
  docker.modem.demuxStream(stream, o, e);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      stream.destroy();
      reject(new Error(`${cmd[0]} did not finish within ${timeoutMs / 1000} s`));
    }, timeoutMs);
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    stream.on('end', done);
    stream.on('close', done);
    stream.on('error', (x) => {
      clearTimeout(timer);
      reject(x);
    });
  });
  const info = await exec.inspect();
  return {
    exitCode: info.ExitCode ?? -1,
    stdout: Buffer.concat(out).toString(),
    stderr: Buffer.concat(err).toString(),
  };
}

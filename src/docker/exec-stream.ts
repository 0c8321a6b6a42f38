import type { Duplex } from 'node:stream';
import { Transform, type TransformCallback } from 'node:stream';
import type Docker from 'dockerode';

/**
 * Splits Docker's multiplexed exec stream (8-byte frame headers: stream type, 3 zero bytes, big-endian length)
 * into stdout, passed on as the readable side with back-pressure, and stderr, kept (the last 64 KiB) for the
 * error message. docker-modem's demuxStream ignores back-pressure, which a multi-GB dump cannot afford.
 */
export class ExecDemux extends Transform {
  private pending = Buffer.alloc(0);
  private frameType = -1;
  private frameLeft = 0;
  private stderrChunks: Buffer[] = [];
  private stderrBytes = 0;

  get stderr(): string {
    return Buffer.concat(this.stderrChunks).toString('utf8');
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    let data = this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = Buffer.alloc(0);
    while (data.length > 0) {
      if (this.frameLeft === 0) {
        if (data.length < 8) {
          this.pending = Buffer.from(data);
          break;
        }
        this.frameType = data[0] ?? 0;
        this.frameLeft = data.readUInt32BE(4);
        data = data.subarray(8);
        continue;
      }
      const n = Math.min(this.frameLeft, data.length);
      const part = data.subarray(0, n);
      if (this.frameType === 2) this.keepStderr(part);
      else this.push(part);
      this.frameLeft -= n;
      data = data.subarray(n);
    }
    cb();
  }

  private keepStderr(part: Buffer): void {
    this.stderrChunks.push(Buffer.from(part));
    this.stderrBytes += part.length;
    while (this.stderrBytes > 65536 && this.stderrChunks.length > 1) {
      this.stderrBytes -= this.stderrChunks.shift()?.length ?? 0;
    }
  }
}

export interface ExecStream {
  /** The hijacked connection: write stdin to it (end() closes stdin), read frames from it. */
  socket: Duplex;
  /** stdout of the command (back-pressured), with stderr collected on the side. */
  output: ExecDemux;
  /** Exit code, once the output has ended. */
  exitCode(): Promise<number>;
}

/** Starts a command in a running container with its output as a stream (and optionally stdin). */
export async function execStream(
  docker: Docker,
  container: string,
  cmd: string[],
  opts: { stdin?: boolean } = {},
): Promise<ExecStream> {
  const exec = await docker.getContainer(container).exec({
    Cmd: cmd,
    AttachStdout: true,
    AttachStderr: true,
    AttachStdin: opts.stdin === true,
  });
  const socket = (await exec.start({ hijack: true, stdin: opts.stdin === true })) as unknown as Duplex;
  const output = new ExecDemux();
  socket.pipe(output);
  socket.once('error', (err) => output.destroy(err));
  return {
    socket,
    output,
    exitCode: async () => (await exec.inspect()).ExitCode ?? -1,
  };
}

import { Transform, type TransformCallback } from 'node:stream';

function mib(n: number): string {
  return `${(n / 1048576).toFixed(1)} MiB`;
}

/**
 * A pass-through that draws one progress line (bytes, MB/s, ETA when the size is known from the previous
 * snapshot) on a terminal. Off when stderr is not a TTY, so logs stay clean JSON in containers and CI.
 */
export class Progress extends Transform {
  private bytes = 0;
  private readonly t0 = Date.now();
  private last = 0;

  constructor(
    private readonly label: string,
    private readonly expected?: number,
    private readonly out: NodeJS.WriteStream = process.stderr,
  ) {
    super();
  }

  static enabled(): boolean {
    return Boolean(process.stderr.isTTY) && process.env.NO_PROGRESS === undefined;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    const now = Date.now();
    if (now - this.last > 250) {
      this.last = now;
      this.draw(now);
    }
    cb(null, chunk);
  }

  /** For bytes Node never sees (GNU tar piping into zstd directly): the running total, from elsewhere. */
  reportTotal(bytes: number): void {
    this.bytes = bytes;
    const now = Date.now();
    if (now - this.last > 250) {
      this.last = now;
      this.draw(now);
    }
  }

  /** The last line of a progress fed by reportTotal. */
  finishLine(bytes: number): void {
    this.bytes = bytes;
    this.draw(Date.now());
    this.out.write('\n');
  }

  override _flush(cb: TransformCallback): void {
    this.draw(Date.now());
    this.out.write('\n');
    cb();
  }

  private draw(now: number): void {
    const secs = Math.max((now - this.t0) / 1000, 0.001);
    const rate = this.bytes / secs;
    let eta = '';
    if (this.expected && rate > 0 && this.expected > this.bytes) {
      eta = `  ETA ${Math.ceil((this.expected - this.bytes) / rate)} s`;
    }
    this.out.write(`\r${this.label}  ${mib(this.bytes)}  ${(rate / 1e6).toFixed(1)} MB/s${eta}\x1b[K`);
  }
}

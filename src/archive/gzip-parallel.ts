import { availableParallelism } from 'node:os';
import { Transform, type TransformCallback } from 'node:stream';
import { promisify } from 'node:util';
import zlib from 'node:zlib';

const gzipAsync = promisify(zlib.gzip) as (buf: Buffer, opts: zlib.ZlibOptions) => Promise<Buffer>;

/** Input per gzip member: large enough that the 18-byte member framing and the window reset cost nothing. */
const CHUNK = 1024 * 1024;

/**
 * Pieces in flight: one more than the cores (a shared machine gives each runnable thread its share), but one
 * thread of libuv's pool (UV_THREADPOOL_SIZE, default 4) stays free for the file writes of the local target.
 */
function defaultParallel(): number {
  const pool = Number(process.env.UV_THREADPOOL_SIZE) || 4;
  return Math.max(2, Math.min(availableParallelism() + 1, pool - 1));
}

/**
 * gzip on every core: the input is cut into 1 MiB pieces, each compressed as an independent gzip member on
 * libuv's thread pool (zlib's async API), and the members are written in input order. Concatenated members
 * are one valid gzip file (RFC 1952 §2.2): gunzip, zcat and Node's createGunzip read it as a whole. At most
 * `parallel` pieces are in flight, so memory stays at a few MiB whatever the input size.
 */
export class ParallelGzip extends Transform {
  private readonly level: number;
  private readonly parallel: number;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private readonly inFlight: Promise<Buffer>[] = [];

  constructor(level = 6, parallel = defaultParallel()) {
    super();
    this.level = level;
    this.parallel = parallel;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    if (this.pendingBytes < CHUNK) {
      cb();
      return;
    }
    this.dispatch();
    this.drainTo(this.parallel - 1).then(() => cb(), cb);
  }

  override _flush(cb: TransformCallback): void {
    // An empty input still gives one (empty) member, so the output is a valid gzip file.
    if (this.pendingBytes > 0 || this.inFlight.length === 0) this.dispatch();
    this.drainTo(0).then(() => cb(), cb);
  }

  private dispatch(): void {
    const buf = Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    const p = gzipAsync(buf, { level: this.level });
    p.catch(() => undefined); // observed in drainTo; avoids an unhandled rejection meanwhile
    this.inFlight.push(p);
  }

  /** Writes finished members, oldest first, until at most `max` are still in flight. */
  private async drainTo(max: number): Promise<void> {
    while (this.inFlight.length > max) {
      const member = await (this.inFlight.shift() as Promise<Buffer>);
      this.push(member);
    }
  }
}

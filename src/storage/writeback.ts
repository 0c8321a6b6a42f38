import type { FileHandle } from 'node:fs/promises';
import { Transform, type TransformCallback } from 'node:stream';

/** Bytes between two early flushes. */
const EVERY = 32 * 1024 * 1024;

/**
 * Passes bytes through and, every 32 MiB, asks the kernel to write the file's dirty pages out
 * (fdatasync, at most one at a time, without holding the stream up). The archive's final fsync then has
 * little left to do: without this, a 1 GB archive's whole writeback happened at the end, in series with
 * compression (measured: ~3 s of a 10 s backup on a busy disk).
 */
export class WritebackTap extends Transform {
  private since = 0;
  private pending: Promise<void> | undefined;
  private failure: Error | undefined;

  constructor(private readonly fh: FileHandle) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.since += chunk.length;
    if (this.since >= EVERY && !this.pending) {
      this.since = 0;
      this.pending = this.fh.datasync().then(
        () => {
          this.pending = undefined;
        },
        (err: Error) => {
          this.pending = undefined;
          this.failure = err;
        },
      );
    }
    cb(this.failure ?? null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    // The write stream closes the handle after the end: no flush may still be running then.
    Promise.resolve(this.pending).then(() => cb(this.failure ?? null), cb);
  }
}

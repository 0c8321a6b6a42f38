import { Transform, type TransformCallback } from 'node:stream';

/**
 * Counts the bytes a put receives and, when the caller said how many to expect, fails at the end of the
 * source on a mismatch — before the object is committed, so a short read never becomes a stored object.
 */
export class ByteCounter extends Transform {
  bytes = 0;
  /** Set when the byte count did not match the expected length. */
  failure?: Error;

  constructor(private readonly expected?: number) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    if (this.expected !== undefined && this.bytes !== this.expected) {
      this.failure = new Error(`source delivered ${this.bytes} bytes, expected ${this.expected}`);
      cb(this.failure);
    } else cb();
  }
}

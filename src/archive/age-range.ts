import { AGE_CHUNK, AGE_NONCE, AGE_SEALED, AGE_TAG, AgeDamage, openChunk, payloadKey } from './age-stream.js';

/**
 * The payload of one age file of `storedSize` bytes whose header ends at `headerEnd`, read in part without
 * the rest (age-stream.ts has the format): given the file key (from the header, with the configured identity),
 * any chunk opens alone, is authenticated as chunk i of this file, and a cut-short file cannot pass for whole.
 */
export class AgePayload {
  /** Bytes of plaintext the file holds. */
  readonly plainSize: number;
  private readonly chunks: number;
  private readonly sealedSize: number;
  private readonly key: Buffer;

  constructor(
    fileKey: Uint8Array,
    /** The payload's 16-byte nonce, right after the header. */
    nonce: Buffer,
    private readonly headerEnd: number,
    private readonly storedSize: number,
  ) {
    if (nonce.length !== AGE_NONCE)
      throw new AgeDamage(`the payload nonce is ${nonce.length} bytes, not ${AGE_NONCE}`);
    const sealed = storedSize - headerEnd - AGE_NONCE;
    const rest = sealed % AGE_SEALED;
    // Only an empty file has a chunk of nothing but its tag, and then it is the only one.
    if (sealed < AGE_TAG || (rest > 0 && rest <= AGE_TAG && sealed !== AGE_TAG))
      throw new AgeDamage(`${sealed} bytes of payload is no whole number of age chunks`);
    this.sealedSize = sealed;
    this.chunks = Math.floor(sealed / AGE_SEALED) + (rest > 0 ? 1 : 0);
    this.plainSize = sealed - this.chunks * AGE_TAG;
    this.key = payloadKey(fileKey, nonce);
  }

  /** The stored bytes [from, to) that hold plaintext [start, end), and the number of their first chunk. */
  span(start: number, end: number): { from: number; to: number; first: number; last: number } {
    if (start < 0 || end > this.plainSize || start >= end)
      throw new RangeError(`bytes ${start}–${end} are not inside ${this.plainSize} bytes of plaintext`);
    const first = Math.floor(start / AGE_CHUNK);
    const last = Math.floor((end - 1) / AGE_CHUNK);
    const base = this.headerEnd + AGE_NONCE;
    return {
      from: base + first * AGE_SEALED,
      to: Math.min(base + (last + 1) * AGE_SEALED, this.storedSize),
      first,
      last,
    };
  }

  /**
   * Plaintext [start, end) from `body`, the stored bytes span(start, end) names, as they arrive: each chunk
   * opened and checked before any of it is given. A chunk that does not open, or bytes missing, throw.
   */
  async *plain(body: AsyncIterable<Buffer>, start: number, end: number): AsyncGenerator<Buffer> {
    const { first, last } = this.span(start, end);
    let i = first;
    // One sealed chunk gathered across the pieces the body comes in (reused: opening copies it out).
    const sealed = Buffer.allocUnsafe(AGE_SEALED);
    let have = 0;
    for await (const data of body) {
      for (let off = 0; off < data.length && i <= last; ) {
        const len = this.sealedLength(i);
        const n = Math.min(len - have, data.length - off);
        data.copy(sealed, have, off, off + n);
        have += n;
        off += n;
        if (have < len) break;
        const plain = openChunk(this.key, i, i === this.chunks - 1, sealed.subarray(0, len));
        have = 0;
        const base = i * AGE_CHUNK;
        yield plain.subarray(Math.max(0, start - base), Math.min(plain.length, end - base));
        i++;
      }
    }
    if (i <= last) throw new AgeDamage(`age chunk ${i} is cut short`);
  }

  /** Stored length of chunk i: the last one is what is left. */
  private sealedLength(i: number): number {
    return i < this.chunks - 1 ? AGE_SEALED : this.sealedSize - (this.chunks - 1) * AGE_SEALED;
  }
}

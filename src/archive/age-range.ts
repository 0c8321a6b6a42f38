import { createDecipheriv, hkdfSync } from 'node:crypto';

/**
 * Part of an age file's plaintext without reading the rest. age's payload (age-encryption.org/v1, STREAM) is
 * a 16-byte nonce, then the plaintext in 64 KiB chunks, each sealed on its own with ChaCha20-Poly1305 under
 * one key derived from the file key and that nonce; chunk i's nonce is i (11 bytes, big-endian) and a flag
 * byte set on the last chunk only. So, given the file key (from the header, with the configured identity),
 * any chunk opens alone, is authenticated as chunk i of this file, and a cut-short file cannot pass for whole.
 */
export const AGE_CHUNK = 64 * 1024;
const TAG = 16;
const SEALED = AGE_CHUNK + TAG;
const NONCE = 16;

/** A payload that is not what age wrote: a chunk that does not open, bytes missing, a size no chunks make. */
export class AgeDamage extends Error {}

/** Where an age header ends (after its MAC line `--- …\n`), or -1 when `head` does not hold all of it. */
export function ageHeaderEnd(head: Buffer): number {
  // Stanza lines start with "-> " and their bodies are base64 (no '-'): the MAC line is the first "\n--- ".
  const mac = head.indexOf('\n--- ');
  if (mac < 0) return -1;
  const eol = head.indexOf(0x0a, mac + 1);
  return eol < 0 ? -1 : eol + 1;
}

/** The payload of one age file of `storedSize` bytes whose header ends at `headerEnd`. */
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
    if (nonce.length !== NONCE)
      throw new AgeDamage(`the payload nonce is ${nonce.length} bytes, not ${NONCE}`);
    const sealed = storedSize - headerEnd - NONCE;
    const rest = sealed % SEALED;
    // Only an empty file has a chunk of nothing but its tag, and then it is the only one.
    if (sealed < TAG || (rest > 0 && rest <= TAG && sealed !== TAG))
      throw new AgeDamage(`${sealed} bytes of payload is no whole number of age chunks`);
    this.sealedSize = sealed;
    this.chunks = Math.floor(sealed / SEALED) + (rest > 0 ? 1 : 0);
    this.plainSize = sealed - this.chunks * TAG;
    this.key = Buffer.from(hkdfSync('sha256', fileKey, nonce, 'payload', 32));
  }

  /** The stored bytes [from, to) that hold plaintext [start, end), and the number of their first chunk. */
  span(start: number, end: number): { from: number; to: number; first: number; last: number } {
    if (start < 0 || end > this.plainSize || start >= end)
      throw new RangeError(`bytes ${start}–${end} are not inside ${this.plainSize} bytes of plaintext`);
    const first = Math.floor(start / AGE_CHUNK);
    const last = Math.floor((end - 1) / AGE_CHUNK);
    const base = this.headerEnd + NONCE;
    return {
      from: base + first * SEALED,
      to: Math.min(base + (last + 1) * SEALED, this.storedSize),
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
    let held: Buffer[] = [];
    let have = 0;
    for await (const data of body) {
      held.push(data);
      have += data.length;
      while (i <= last && have >= this.sealedLength(i)) {
        const all = held.length === 1 ? (held[0] as Buffer) : Buffer.concat(held, have);
        const len = this.sealedLength(i);
        const plain = this.open(i, all.subarray(0, len));
        held = len < all.length ? [all.subarray(len)] : [];
        have -= len;
        const base = i * AGE_CHUNK;
        yield plain.subarray(Math.max(0, start - base), Math.min(plain.length, end - base));
        i++;
      }
    }
    if (i <= last) throw new AgeDamage(`age chunk ${i} is cut short`);
  }

  /** Stored length of chunk i: the last one is what is left. */
  private sealedLength(i: number): number {
    return i < this.chunks - 1 ? SEALED : this.sealedSize - (this.chunks - 1) * SEALED;
  }

  private open(i: number, sealed: Buffer): Buffer {
    const nonce = Buffer.alloc(12);
    nonce.writeUIntBE(i, 5, 6);
    nonce[11] = i === this.chunks - 1 ? 1 : 0;
    const d = createDecipheriv('chacha20-poly1305', this.key, nonce, { authTagLength: TAG });
    d.setAuthTag(sealed.subarray(sealed.length - TAG));
    try {
      const head = d.update(sealed.subarray(0, sealed.length - TAG));
      d.final();
      return head;
    } catch {
      throw new AgeDamage(`age chunk ${i} does not open (damaged, or not this file's)`);
    }
  }
}

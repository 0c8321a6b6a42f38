import { SidecarError } from '../common/errors.js';
import { isSha1Hex } from './layout.js';
import { BLOCK } from './tar-header.js';

export interface PackEntry {
  sha1: string;
  size: number;
  mode: number;
  uid: number;
  gid: number;
  mtimeMs: number;
  /** Offset of the data in the uncompressed tar. */
  offset: number;
}

/** Pulls exact byte counts out of a stream of chunks. */
class Bytes {
  private buf: Buffer = Buffer.alloc(0);
  private ended = false;
  consumed = 0;
  constructor(private readonly it: AsyncIterator<Buffer>) {}

  /** Up to `max` bytes (at least one) of what is buffered or next; empty at the end. */
  async some(max: number): Promise<Buffer> {
    if (this.buf.length === 0 && !this.ended) {
      const r = await this.it.next();
      if (r.done) this.ended = true;
      else this.buf = r.value;
    }
    const out = this.buf.subarray(0, Math.min(max, this.buf.length));
    this.buf = this.buf.subarray(out.length);
    this.consumed += out.length;
    return out;
  }

  async exactly(n: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    for (let got = 0; got < n; ) {
      const b = await this.some(n - got);
      if (b.length === 0) throw new Error('truncated');
      parts.push(b);
      got += b.length;
    }
    return parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts);
  }
}

function octal(h: Buffer, off: number, width: number): number {
  const first = h[off] ?? 0;
  if (first & 0x80) {
    // GNU base-256: big-endian two's complement over the field, 0x80 marking a positive value, 0xff a
    // negative one (GNU tar writes an mtime before 1970 so).
    let v = BigInt(first === 0xff ? 0xff : first & 0x7f);
    for (let i = 1; i < width; i++) v = (v << 8n) | BigInt(h[off + i] ?? 0);
    if (first === 0xff) v -= 1n << BigInt(8 * width);
    return Number(v);
  }
  const text = h
    .toString('ascii', off, off + width)
    .replace(/[\0 ]+$/, '')
    .replace(/^ +/, '');
  if (!/^[0-7]*$/.test(text)) throw new Error(`bad numeric field "${text}"`);
  return text === '' ? 0 : Number.parseInt(text, 8);
}

function parseHeader(h: Buffer): Omit<PackEntry, 'offset'> {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : (h[i] ?? 0);
  if (sum !== octal(h, 148, 8)) throw new Error('header checksum mismatch');
  const name = h.toString('utf8', 0, 100).replace(/\0.*$/s, '');
  const m = /^filedir\/([0-9a-f]{2})\/([0-9a-f]{2})\/([0-9a-f]{40})$/.exec(name);
  const sha1 = m?.[3] ?? '';
  if (!m || !isSha1Hex(sha1) || m[1] !== sha1.slice(0, 2) || m[2] !== sha1.slice(2, 4)) {
    throw new Error(`unexpected entry "${name.slice(0, 120)}"`);
  }
  if (h[156] !== 0x30 || h[345] !== 0) throw new Error(`entry ${name} is not a plain regular file`);
  return {
    sha1,
    mode: octal(h, 100, 8),
    uid: octal(h, 108, 8),
    gid: octal(h, 116, 8),
    size: octal(h, 124, 12),
    mtimeMs: octal(h, 136, 12) * 1000,
  };
}

/**
 * Reads a pack's tar strictly: only the entries the writer makes (regular files named filedir/ab/cd/<sha1>)
 * are accepted, so a tampered pack cannot make the reader write anywhere else. For each entry `onEntry`
 * gets a pull function for its data, which it must read to the end or leave untouched (skipped here).
 */
export async function readPackTar(
  source: AsyncIterable<Buffer>,
  packId: string,
  onEntry: (e: PackEntry, data: () => AsyncGenerator<Buffer>) => Promise<void>,
): Promise<void> {
  const bytes = new Bytes(source[Symbol.asyncIterator]());
  try {
    for (;;) {
      const h = await bytes.exactly(BLOCK);
      if (h.every((b) => b === 0)) {
        // End of archive: only zeros may follow (the second zero block, a tar record's padding).
        for (let b = await bytes.some(1 << 16); b.length > 0; b = await bytes.some(1 << 16)) {
          if (!b.every((x) => x === 0)) throw new Error('data after the end of the archive');
        }
        return;
      }
      const head = parseHeader(h);
      const entry: PackEntry = { ...head, offset: bytes.consumed };
      let left = head.size;
      const data = async function* () {
        while (left > 0) {
          const b = await bytes.some(Math.min(left, 1 << 20));
          if (b.length === 0) throw new Error('truncated');
          left -= b.length;
          yield b;
        }
      };
      await onEntry(entry, data);
      for await (const _ of data()); // skip what the consumer did not read
      const pad = (BLOCK - (head.size % BLOCK)) % BLOCK;
      if (pad) await bytes.exactly(pad);
    }
  } catch (err) {
    if (err instanceof SidecarError) throw err;
    throw new SidecarError(
      'INTEGRITY_FAILED',
      `pack ${packId} is damaged: ${(err as Error).message}`,
      'run `verify --read-data`; blobs in this pack cannot be restored from it',
      { cause: err },
    );
  }
}

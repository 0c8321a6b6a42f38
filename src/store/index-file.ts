import { createHash } from 'node:crypto';
import { SidecarError } from '../common/errors.js';
import { HASH_BYTES } from './entry-table.js';
import type { FrameTable } from './frames.js';

/**
 * The index file format (docs/format.md, "Index files"): which blobs each pack holds and where in the pack's
 * tar. Binary, big-endian: 36 bytes a blob, so a million blobs' index is ~36 MB on the wire, not ~150 of JSON.
 *
 *   magic "MBSIDX01" | u32 pack count | packs… | sha256 of everything before it (32 bytes)
 *   pack: id (32 bytes) | u64 stored size | u8 codec | u8 flags (bit 0: age) | u32 blob count | blobs…
 *   blob: sha1 (20 bytes) | u64 data offset in the uncompressed tar | u64 size
 *
 * "MBSIDX02" (written when a pack is framed, frames.ts) adds flag bit 1: the pack's blob count is followed by
 * its frame table, u32 tar bytes a frame | u32 frame count | u32 compressed length of each frame.
 */
/** A pack as the index knows it: its id and the codec and encryption its stored bytes went through. */
export interface PackRecord {
  id: string;
  storedSize: number;
  codec: 'zstd' | 'gzip' | 'none';
  encrypted: boolean;
  /** Independent zstd frames (frames.ts): where each is, so a reader can fetch only some. */
  frames?: FrameTable;
}

export const INDEX_MAGIC = Buffer.from('MBSIDX01', 'ascii');
const FRAMED_MAGIC = Buffer.from('MBSIDX02', 'ascii');
const FLAG_AGE = 1;
const FLAG_FRAMES = 2;
const CODECS = ['none', 'gzip', 'zstd'] as const;
const PACK_HEAD = 32 + 8 + 1 + 1 + 4;
/** Bytes of one blob's record. */
export const BLOB_RECORD_BYTES = HASH_BYTES + 8 + 8;

export interface IndexedBlob {
  sha1: Uint8Array;
  offset: number;
  size: number;
}

export interface IndexedPack {
  pack: PackRecord;
  blobs: IndexedBlob[];
}

/** Packs as objects a blob, or (a backup's packs) as the file's own records. */
export function encodeIndex(packs: readonly (IndexedPack | DecodedPack)[]): Buffer {
  const count = (p: IndexedPack | DecodedPack) =>
    'records' in p ? p.records.length / BLOB_RECORD_BYTES : p.blobs.length;
  const tableBytes = (p: IndexedPack | DecodedPack) =>
    p.pack.frames ? 8 + 4 * p.pack.frames.lengths.length : 0;
  let total = INDEX_MAGIC.length + 4 + 32;
  for (const p of packs) total += PACK_HEAD + tableBytes(p) + count(p) * BLOB_RECORD_BYTES;
  const buf = Buffer.alloc(total);
  // Without a framed pack the file is what versions before frames wrote, and they can still read it.
  let o = (packs.some((p) => p.pack.frames) ? FRAMED_MAGIC : INDEX_MAGIC).copy(buf, 0);
  o = buf.writeUInt32BE(packs.length, o);
  for (const p of packs) {
    const { pack } = p;
    o += Buffer.from(pack.id, 'hex').copy(buf, o);
    o = buf.writeBigUInt64BE(BigInt(pack.storedSize), o);
    o = buf.writeUInt8(CODECS.indexOf(pack.codec), o);
    o = buf.writeUInt8((pack.encrypted ? FLAG_AGE : 0) | (pack.frames ? FLAG_FRAMES : 0), o);
    o = buf.writeUInt32BE(count(p), o);
    if (pack.frames) {
      o = buf.writeUInt32BE(pack.frames.frameBytes, o);
      o = buf.writeUInt32BE(pack.frames.lengths.length, o);
      for (const len of pack.frames.lengths) o = buf.writeUInt32BE(len, o);
    }
    if ('records' in p) {
      o += p.records.copy(buf, o);
      continue;
    }
    for (const b of p.blobs) {
      buf.set(b.sha1, o);
      o += HASH_BYTES;
      o = buf.writeBigUInt64BE(BigInt(b.offset), o);
      o = buf.writeBigUInt64BE(BigInt(b.size), o);
    }
  }
  createHash('sha256').update(buf.subarray(0, o)).digest().copy(buf, o);
  return buf;
}

/**
 * Blob records built one at a time in the index file's layout (36 bytes each): a pack's blobs until its index
 * file is written, with no object or Buffer a blob (65,536 of those waiting were ~9 MB of heap).
 */
export class RecordsBuilder {
  private buf = Buffer.alloc(0);
  length = 0;

  push(sha1: string, offset: number, size: number): void {
    const at = this.length * BLOB_RECORD_BYTES;
    if (at + BLOB_RECORD_BYTES > this.buf.length) {
      const grown = Buffer.alloc(Math.max(64 * BLOB_RECORD_BYTES, 2 * this.buf.length));
      this.buf.copy(grown, 0, 0, at);
      this.buf = grown;
    }
    if (this.buf.write(sha1, at, HASH_BYTES, 'hex') !== HASH_BYTES) throw new Error(`not a SHA-1: ${sha1}`);
    writeU64(this.buf, at + HASH_BYTES, offset);
    writeU64(this.buf, at + HASH_BYTES + 8, size);
    this.length++;
  }

  /** The records so far (a view). */
  records(): Buffer {
    return this.buf.subarray(0, this.length * BLOB_RECORD_BYTES);
  }
}

function writeU64(buf: Buffer, at: number, v: number): void {
  buf.writeUInt32BE(Math.floor(v / 2 ** 32), at);
  buf.writeUInt32BE(v % 2 ** 32, at + 4);
}

/** A big-endian u64 as a number, without a BigInt (exact below 2^53; the loader calls this millions of times). */
export function readU64(buf: Buffer, at: number): number {
  return buf.readUInt32BE(at) * 2 ** 32 + buf.readUInt32BE(at + 4);
}

/** One pack of a decoded index file: its blobs as the file's raw records (no object a blob). */
export interface DecodedPack {
  pack: PackRecord;
  records: Buffer;
}

/** The blobs of decoded records, as objects (for the few callers that want them; loading does not). */
export function* recordsOf(records: Buffer): Generator<IndexedBlob & { at: number }> {
  for (let o = 0; o + BLOB_RECORD_BYTES <= records.length; o += BLOB_RECORD_BYTES) {
    yield {
      at: o,
      sha1: records.subarray(o, o + HASH_BYTES),
      offset: Number(records.readBigUInt64BE(o + HASH_BYTES)),
      size: Number(records.readBigUInt64BE(o + HASH_BYTES + 8)),
    };
  }
}

/** Decodes an index file (already decrypted); `name` goes into the error of a damaged one. */
export function decodeIndex(buf: Buffer, name: string): DecodedPack[] {
  const damaged = (why: string) =>
    new SidecarError(
      'INTEGRITY_FAILED',
      `store index ${name} is damaged (${why})`,
      'run `verify` on the store; the packs themselves are intact and an index can be rebuilt from them',
    );
  const magic = buf.subarray(0, INDEX_MAGIC.length);
  const framed = magic.equals(FRAMED_MAGIC);
  if (buf.length < INDEX_MAGIC.length + 36 || !(framed || magic.equals(INDEX_MAGIC))) {
    throw damaged('not an index file');
  }
  const body = buf.subarray(0, buf.length - 32);
  if (
    !createHash('sha256')
      .update(body)
      .digest()
      .equals(buf.subarray(buf.length - 32))
  ) {
    throw damaged('checksum mismatch');
  }
  let o = INDEX_MAGIC.length;
  const count = body.readUInt32BE(o);
  o += 4;
  const packs: DecodedPack[] = [];
  for (let p = 0; p < count; p++) {
    if (o + PACK_HEAD > body.length) throw damaged('truncated');
    const id = body.toString('hex', o, o + 32);
    const storedSize = Number(body.readBigUInt64BE(o + 32));
    const codec = CODECS[body.readUInt8(o + 40)];
    if (!codec) throw damaged(`unknown codec ${body.readUInt8(o + 40)}`);
    const flags = body.readUInt8(o + 41);
    if (flags & ~(framed ? FLAG_AGE | FLAG_FRAMES : FLAG_AGE)) throw damaged(`unknown flags ${flags}`);
    const n = body.readUInt32BE(o + 42);
    o += PACK_HEAD;
    const pack: PackRecord = { id, storedSize, codec, encrypted: (flags & FLAG_AGE) !== 0 };
    if (flags & FLAG_FRAMES) {
      if (o + 8 > body.length) throw damaged('truncated');
      const frameBytes = body.readUInt32BE(o);
      const frames = body.readUInt32BE(o + 4);
      o += 8;
      if (o + 4 * frames > body.length) throw damaged('truncated');
      // A copy: `buf` may be a reader's scratch buffer, reused for the next file.
      const lengths = new Uint32Array(frames);
      let sum = 0;
      for (let k = 0; k < frames; k++, o += 4) sum += lengths[k] = body.readUInt32BE(o);
      // The lengths are of the compressed bytes: the stored size in a plain pack; in an age-encrypted one, its
      // plaintext, which is smaller (header and tags), checked against the header when the pack is read.
      const fits = pack.encrypted ? sum < storedSize : sum === storedSize;
      if (codec !== 'zstd' || frameBytes === 0 || frames === 0 || !fits)
        throw damaged(`pack ${id}'s frame table does not fit the pack`);
      pack.frames = { frameBytes, lengths };
    }
    if (o + n * BLOB_RECORD_BYTES > body.length) throw damaged('truncated');
    const records = body.subarray(o, o + n * BLOB_RECORD_BYTES);
    o += n * BLOB_RECORD_BYTES;
    packs.push({ pack, records });
  }
  if (o !== body.length) throw damaged('trailing bytes');
  return packs;
}

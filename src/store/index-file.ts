import { createHash } from 'node:crypto';
import { SidecarError } from '../errors.js';
import type { PackRecord } from './blob-index.js';
import { HASH_BYTES } from './entry-table.js';

/**
 * The index file format (docs/format.md, "Index files"): which blobs each pack holds and where in the pack's
 * tar. Binary, big-endian: 36 bytes a blob, so a million blobs' index is ~36 MB on the wire, not ~150 of JSON.
 *
 *   magic "MBSIDX01" | u32 pack count | packs… | sha256 of everything before it (32 bytes)
 *   pack: id (32 bytes) | u64 stored size | u8 codec | u8 flags (bit 0: age) | u32 blob count | blobs…
 *   blob: sha1 (20 bytes) | u64 data offset in the uncompressed tar | u64 size
 */
export const INDEX_MAGIC = Buffer.from('MBSIDX01', 'ascii');
const CODECS = ['none', 'gzip', 'zstd'] as const;
const PACK_HEAD = 32 + 8 + 1 + 1 + 4;
const BLOB_BYTES = HASH_BYTES + 8 + 8;

export interface IndexedBlob {
  sha1: Uint8Array;
  offset: number;
  size: number;
}

export interface IndexedPack {
  pack: PackRecord;
  blobs: IndexedBlob[];
}

export function encodeIndex(packs: readonly IndexedPack[]): Buffer {
  let total = INDEX_MAGIC.length + 4 + 32;
  for (const p of packs) total += PACK_HEAD + p.blobs.length * BLOB_BYTES;
  const buf = Buffer.alloc(total);
  let o = INDEX_MAGIC.copy(buf, 0);
  o = buf.writeUInt32BE(packs.length, o);
  for (const { pack, blobs } of packs) {
    o += Buffer.from(pack.id, 'hex').copy(buf, o);
    o = buf.writeBigUInt64BE(BigInt(pack.storedSize), o);
    o = buf.writeUInt8(CODECS.indexOf(pack.codec), o);
    o = buf.writeUInt8(pack.encrypted ? 1 : 0, o);
    o = buf.writeUInt32BE(blobs.length, o);
    for (const b of blobs) {
      buf.set(b.sha1, o);
      o += HASH_BYTES;
      o = buf.writeBigUInt64BE(BigInt(b.offset), o);
      o = buf.writeBigUInt64BE(BigInt(b.size), o);
    }
  }
  createHash('sha256').update(buf.subarray(0, o)).digest().copy(buf, o);
  return buf;
}

/** Decodes an index file (already decrypted); `name` goes into the error of a damaged one. */
export function decodeIndex(buf: Buffer, name: string): IndexedPack[] {
  const damaged = (why: string) =>
    new SidecarError(
      'INTEGRITY_FAILED',
      `store index ${name} is damaged (${why})`,
      'run `verify` on the store; the packs themselves are intact and an index can be rebuilt from them',
    );
  if (buf.length < INDEX_MAGIC.length + 36 || !buf.subarray(0, INDEX_MAGIC.length).equals(INDEX_MAGIC)) {
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
  const packs: IndexedPack[] = [];
  for (let p = 0; p < count; p++) {
    if (o + PACK_HEAD > body.length) throw damaged('truncated');
    const id = body.toString('hex', o, o + 32);
    const storedSize = Number(body.readBigUInt64BE(o + 32));
    const codec = CODECS[body.readUInt8(o + 40)];
    if (!codec) throw damaged(`unknown codec ${body.readUInt8(o + 40)}`);
    const encrypted = (body.readUInt8(o + 41) & 1) === 1;
    const n = body.readUInt32BE(o + 42);
    o += PACK_HEAD;
    if (o + n * BLOB_BYTES > body.length) throw damaged('truncated');
    const blobs: IndexedBlob[] = new Array(n);
    for (let i = 0; i < n; i++, o += BLOB_BYTES) {
      blobs[i] = {
        sha1: body.subarray(o, o + HASH_BYTES),
        offset: Number(body.readBigUInt64BE(o + HASH_BYTES)),
        size: Number(body.readBigUInt64BE(o + HASH_BYTES + 8)),
      };
    }
    packs.push({ pack: { id, storedSize, codec, encrypted }, blobs });
  }
  if (o !== body.length) throw damaged('trailing bytes');
  return packs;
}

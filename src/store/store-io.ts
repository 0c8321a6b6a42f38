import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { SidecarError } from '../errors.js';
import type { Backend } from '../storage/backend.js';
import { BlobIndex } from './blob-index.js';
import { AGE_MAGIC, type StoreEncoding } from './encoding.js';
import {
  BLOB_RECORD_BYTES,
  type DecodedPack,
  decodeIndex,
  encodeIndex,
  type IndexedPack,
} from './index-file.js';
import { INDEX_PREFIX, idOfKey, indexKey } from './layout.js';

/** Stores a finished spool file under `key`, through the backend's file path when it has one. */
export async function putSpooled(backend: Backend, key: string, path: string, size: number): Promise<void> {
  if (backend.putFile) await backend.putFile(key, path, { contentLength: size });
  else await backend.put(key, createReadStream(path), { contentLength: size });
}

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function through(data: Buffer, stage: NodeJS.ReadWriteStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  await pipeline(Readable.from([data]), stage, async (src: AsyncIterable<Buffer | string>) => {
    for await (const c of src) chunks.push(Buffer.from(c));
  });
  return Buffer.concat(chunks);
}

/**
 * Writes an index file for packs already stored (written after them: an index never names a pack that is
 * not there). Returns its id. Encrypted when the store is, since blob hashes tell which known files a site has.
 */
export async function writeIndexFile(
  backend: Backend,
  enc: StoreEncoding,
  packs: IndexedPack[],
): Promise<string> {
  const plain = encodeIndex(packs);
  const stored = enc.encrypt ? await through(plain, enc.encrypt()) : plain;
  const id = createHash('sha256').update(stored).digest('hex');
  await backend.put(indexKey(id), Readable.from([stored]), { contentLength: stored.length });
  return id;
}

export async function readIndexFile(
  backend: Backend,
  enc: StoreEncoding,
  id: string,
): Promise<DecodedPack[]> {
  const stored = await collect(await backend.get(indexKey(id)));
  const encrypted = stored.subarray(0, AGE_MAGIC.length).equals(AGE_MAGIC);
  if (encrypted && !enc.decrypt) {
    throw new SidecarError(
      'DECRYPTION_FAILED',
      `store index ${id} is encrypted and no age identity or passphrase is configured`,
      'set BACKUP_AGE_IDENTITY (or BACKUP_AGE_PASSPHRASE) to the key the backups were made with',
    );
  }
  const plain = encrypted && enc.decrypt ? await through(stored, enc.decrypt()) : stored;
  return decodeIndex(plain, id);
}

/**
 * Builds the in-memory index from every index file of the store. Files are read a few at a time and their
 * entries appended; one sort at the end. Keys under store/index/ that are not index ids are ignored.
 */
export async function loadIndex(backend: Backend, enc: StoreEncoding, concurrency = 8): Promise<BlobIndex> {
  const ids = (await backend.list(INDEX_PREFIX))
    .map((o) => idOfKey(o.key))
    .filter((id): id is string => !!id);
  const index = new BlobIndex();
  for (let i = 0; i < ids.length; i += concurrency) {
    const part = ids.slice(i, i + concurrency);
    // Decoded objects live for one group of files only; the table keeps 36 bytes a blob.
    for (const packs of await Promise.all(part.map((id) => readIndexFile(backend, enc, id))))
      index.append(packs);
  }
  index.seal();
  return index;
}

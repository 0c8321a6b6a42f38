import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { SidecarError } from '../common/errors.js';
import type { Backend } from '../storage/backend.js';
import type { RetryingBackend } from '../storage/retry.js';
import { BlobIndex } from './blob-index.js';
import { AGE_MAGIC, type StoreEncoding } from './encoding.js';
import type { IndexCache, Scratch } from './index-cache.js';
import {
  BLOB_RECORD_BYTES,
  type DecodedPack,
  decodeIndex,
  encodeIndex,
  type IndexedPack,
} from './index-file.js';
import { INDEX_PREFIX, idOfKey, indexKey } from './layout.js';

/**
 * A spooled object's id (the sha256 of its bytes) and size, read back from the page cache in one buffer's
 * steps: a stream through a Transform cost 0.7 s for 520 MB of packs, this about half.
 */
export async function sha256OfFile(
  path: string,
  signal?: AbortSignal,
): Promise<{ id: string; storedSize: number }> {
  const fh = await open(path, 'r');
  try {
    return await sha256OfHandle(fh, signal);
  } finally {
    await fh.close();
  }
}

/**
 * The same of an open file, read at explicit offsets: the file position, which a child process given the
 * same descriptor shares, is left alone.
 */
export async function sha256OfHandle(
  fh: FileHandle,
  signal?: AbortSignal,
): Promise<{ id: string; storedSize: number }> {
  const hash = createHash('sha256');
  const buf = Buffer.allocUnsafe(1 << 20);
  let storedSize = 0;
  for (;;) {
    signal?.throwIfAborted();
    const { bytesRead } = await fh.read(buf, 0, buf.length, storedSize);
    if (bytesRead === 0) break;
    hash.update(buf.subarray(0, bytesRead));
    storedSize += bytesRead;
  }
  return { id: hash.digest('hex'), storedSize };
}

/** Stores a finished spool file under `key`, through the backend's file path when it has one. */
export async function putSpooled(backend: Backend, key: string, path: string, size: number): Promise<void> {
  const retrying = backend as Backend & { putFrom?: RetryingBackend['putFrom'] };
  if (backend.putFile) await backend.putFile(key, path, { contentLength: size });
  else if (retrying.putFrom)
    await retrying.putFrom(key, () => createReadStream(path), { contentLength: size });
  else await backend.put(key, createReadStream(path), { contentLength: size });
}

/** Stores a small object from memory; through a retrying backend, each try gets a fresh stream. */
export async function putBuffer(backend: Backend, key: string, data: Buffer): Promise<void> {
  const retrying = backend as Backend & { putFrom?: RetryingBackend['putFrom'] };
  const opts = { contentLength: data.length };
  if (retrying.putFrom) await retrying.putFrom(key, () => Readable.from([data]), opts);
  else await backend.put(key, Readable.from([data]), opts);
}

/**
 * The stream's bytes in `scratch` (grown when too small, to `size` when the caller knows it: a buffer grown by
 * doubling held up to twice each file, times the readers: ~40 MB of a million blobs' load).
 */
async function collect(
  stream: Readable,
  scratch: Scratch = { buf: Buffer.alloc(0) },
  size = 0,
): Promise<Buffer> {
  if (scratch.buf.length < size) scratch.buf = Buffer.allocUnsafe(size);
  let n = 0;
  for await (const c of stream) {
    const chunk = c as Buffer;
    if (n + chunk.length > scratch.buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(64 * 1024, Math.ceil(1.25 * (n + chunk.length))));
      scratch.buf.copy(grown, 0, 0, n);
      scratch.buf = grown;
    }
    chunk.copy(scratch.buf, n);
    n += chunk.length;
  }
  return scratch.buf.subarray(0, n);
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
  packs: (IndexedPack | DecodedPack)[],
  cache?: IndexCache,
): Promise<string> {
  const plain = encodeIndex(packs);
  const stored = enc.encrypt ? await through(plain, enc.encrypt()) : plain;
  const id = createHash('sha256').update(stored).digest('hex');
  await putBuffer(backend, indexKey(id), stored);
  await cache?.put(id, plain);
  return id;
}

/** Reads and decodes one index file. With `scratch`, the result views that buffer: use it before the next read. */
export async function readIndexFile(
  backend: Backend,
  enc: StoreEncoding,
  id: string,
  scratch?: Scratch,
): Promise<DecodedPack[]>;
/** With a cache: null when the file is encrypted and no key is configured (its blobs count as unknown). */
export async function readIndexFile(
  backend: Backend,
  enc: StoreEncoding,
  id: string,
  scratch: Scratch | undefined,
  cache: IndexCache | undefined,
  size?: number,
): Promise<DecodedPack[] | null>;
export async function readIndexFile(
  backend: Backend,
  enc: StoreEncoding,
  id: string,
  scratch?: Scratch,
  cache?: IndexCache,
  size?: number,
): Promise<DecodedPack[] | null> {
  const cached = await cache?.get(id, scratch);
  if (cached) return decodeIndex(cached, id);
  const stored = await collect(await backend.get(indexKey(id)), scratch, size);
  const encrypted = stored.subarray(0, AGE_MAGIC.length).equals(AGE_MAGIC);
  // A backup with recipients only cannot read it: its blobs count as unknown (stored again).
  if (encrypted && !enc.decrypt && cache) return null;
  if (encrypted && !enc.decrypt) {
    throw new SidecarError(
      'DECRYPTION_FAILED',
      `store index ${id} is encrypted and no age identity or passphrase is configured`,
      'set BACKUP_AGE_IDENTITY (or BACKUP_AGE_PASSPHRASE) to the key the backups were made with',
    );
  }
  const plain = encrypted && enc.decrypt ? await through(stored, enc.decrypt()) : stored;
  const packs = decodeIndex(plain, id);
  // The decoded records view `plain` (maybe the scratch buffer): copy it out before the next read.
  await cache?.put(id, Buffer.from(plain));
  return packs;
}

/** Bytes of index files loadIndex's readers hold at once, at most (one file more when a file is larger). */
const READ_BUDGET = 8 * 1024 * 1024;

export interface IndexReadOptions {
  concurrency?: number;
  cache?: IndexCache;
  unreadable?: (id: string) => void;
}

/**
 * Calls `onPacks` with the decoded packs of every index file of the store. Files are read a few at a time, each
 * into its reader's buffer (the packs view it: use them before returning). Keys under store/index/ that are
 * not index ids are ignored. With a cache: `unreadable` for a file it cannot decrypt.
 */
export async function forEachIndexFile(
  backend: Backend,
  enc: StoreEncoding,
  onPacks: (packs: DecodedPack[], id: string) => void,
  o: IndexReadOptions & { listed?: (files: { size: number }[]) => void } = {},
): Promise<void> {
  const listed = (await backend.list(INDEX_PREFIX)).filter((x) => idOfKey(x.key) !== null);
  o.listed?.(listed);
  await o.cache?.retain(new Set(listed.map((x) => x.key.slice(INDEX_PREFIX.length))));
  // A few readers at once (remote latency), each handing a file on before it reads the next into its buffer;
  // no more than READ_BUDGET bytes of files held at once (a backup's index files reach ~2.4 MB each).
  const largest = listed.reduce((m, x) => Math.max(m, x.size), 0);
  const readers = Math.max(1, Math.min(o.concurrency ?? 8, Math.floor(READ_BUDGET / Math.max(1, largest))));
  let next = 0;
  const reader = async () => {
    const scratch: Scratch = { buf: Buffer.alloc(0) };
    for (let x = listed[next++]; x !== undefined; x = listed[next++]) {
      const id = x.key.slice(INDEX_PREFIX.length);
      const packs = await readIndexFile(backend, enc, id, scratch, o.cache, x.size);
      if (packs) onPacks(packs, id);
      else o.unreadable?.(id);
    }
  };
  await Promise.all(Array.from({ length: Math.min(readers, listed.length) }, reader));
}

/** Builds the in-memory index from every index file of the store: entries appended, one sort at the end. */
export async function loadIndex(
  backend: Backend,
  enc: StoreEncoding,
  o: IndexReadOptions & { hashesOnly?: boolean } = {},
): Promise<BlobIndex> {
  const index = new BlobIndex({ hashesOnly: o.hashesOnly });
  await forEachIndexFile(backend, enc, (packs) => index.append(packs), {
    ...o,
    // An index file takes at least 36 bytes a blob: its size bounds the count, so the table is sized once.
    listed: (files) => index.reserve(files.reduce((n, x) => n + Math.floor(x.size / BLOB_RECORD_BYTES), 0)),
  });
  index.seal();
  return index;
}

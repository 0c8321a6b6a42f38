import { createHash } from 'node:crypto';
import { constants, readFile } from 'node:fs';
import { mkdir, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Backend } from '../storage/backend.js';
import type { BlobIndex } from './blob-index.js';
import type { StoreEncoding } from './encoding.js';
import type { IndexCache } from './index-cache.js';
import type { IndexedBlob, PackRecord } from './index-file.js';
import { blobPath, packKey } from './layout.js';
import type { ListedBlob } from './listing.js';
import { PackSink } from './pack-sink.js';
import { putSpooled, writeIndexFile } from './store-io.js';
import type { TarFile } from './tar-header.js';

/**
 * Uncompressed tar bytes per pack. Measured on a 153 MB Moodle-like filedir (3,000 files) into s3rver:
 * 4 MiB packs made 476 requests a GB, 16 MiB 137, 64 MiB 91, at about the same speed; but a file just
 * under the pack size is held in memory whole, and 64 MiB packs took peak RSS past 150 MB. A 16 MiB tar
 * also compresses below the default S3 part size: one PUT a pack.
 */
export const DEFAULT_PACK_SIZE = 16 * 1024 * 1024;

export interface PackWriterOptions {
  backend: Backend;
  /** The store's index, loaded before: names it holds are not read at all. New packs are added to it. */
  index: BlobIndex;
  encoding: StoreEncoding;
  /** Plain copies of the index files written (the state volume), for backups that cannot decrypt them. */
  cache?: IndexCache;
  /** A local directory for the pack being written (one file of at most about `packSize` bytes). */
  spoolDir: string;
  /** A pack is cut once its tar reaches this size; a file at least this large is a pack of its own. */
  packSize?: number;
  signal?: AbortSignal;
}

export type AddResult =
  | { status: 'known'; sha1: string }
  | { status: 'added'; sha1: string }
  | { status: 'vanished'; sha1: string }
  /** The content's SHA-1 is not the file's name: stored (or found) under `actual`, the real hash. */
  | { status: 'mismatch'; sha1: string; claimed: string; actual: string; stored: boolean };

const NO_FOLLOW = constants.O_RDONLY | constants.O_NOFOLLOW;

/** fs.readFile with O_NOFOLLOW: a symlink put in a blob's place is an error (ELOOP), never followed. */
const readFileNoFollow = (path: string) =>
  new Promise<Buffer>((resolve, reject) =>
    // Node takes numeric flags; its types name only the string forms.
    readFile(path, { flag: NO_FOLLOW as unknown as string }, (err, data) =>
      err ? reject(err) : resolve(data),
    ),
  );

/** Files read ahead of the pack being written, and at most this many bytes of them in memory. */
const READ_AHEAD = 16;
const READ_AHEAD_BYTES = 8 * 1024 * 1024;

type Meta = Omit<TarFile, 'name' | 'size'>;
type Loaded =
  | { kind: 'vanished' }
  | { kind: 'large'; size: number; meta: Meta }
  | { kind: 'read'; data: Buffer; meta: Meta; actual: string };

export interface WriterStats {
  packs: number;
  blobs: number;
  /** Bytes of file content read. */
  readBytes: number;
  /** Bytes of packs put to the backend (index files add ~36 bytes a blob). */
  storedBytes: number;
}

/**
 * Adds blobs to new packs. Each file is read once, hashed while read, and stored under its real SHA-1.
 * Files up to the pack size are read whole into memory (the header, which carries the real name, must come
 * before the data); a larger one is streamed as a pack of its own under its claimed name and, in the rare
 * case that the name is wrong, that pack is dropped and the file read again under its real name.
 * Call finish() at the end: the last pack is stored only then. On an error, call abort(): the open pack's
 * compressor and spool file go, and nothing of it reaches the backend.
 */
export class PackWriter {
  readonly stats: WriterStats = { packs: 0, blobs: 0, readBytes: 0, storedBytes: 0 };
  private readonly packSize: number;
  private sink: PackSink | undefined;
  private entries: IndexedBlob[] = [];
  /** Hashes in the open pack (not yet in the index); a pack holds a few hundred, not a million. */
  private pending = new Set<string>();

  constructor(private readonly o: PackWriterOptions) {
    this.packSize = o.packSize ?? DEFAULT_PACK_SIZE;
  }

  /** Whether the store (or the pack being written) already holds this blob. */
  has(sha1: string): boolean {
    return this.pending.has(sha1) || this.o.index.has(Buffer.from(sha1, 'hex'));
  }

  /** Stores one listed blob unless the store holds its name already. `root` is the dataroot. */
  async add(root: string, blob: ListedBlob): Promise<AddResult> {
    if (this.has(blob.sha1)) return { status: 'known', sha1: blob.sha1 };
    return this.store(root, blob, await this.load(root, blob));
  }

  /**
   * Stores every listed blob the store lacks, reading up to `READ_AHEAD` files (and `READ_AHEAD_BYTES`) ahead
   * of the pack being written: one file at a time left the disk and the hash idle between awaits (the bench's
   * first run: 20,000 files at a sixth of `tar | zstd`). Results come in the listing's order.
   */
  async addAll(
    root: string,
    blobs: AsyncIterable<ListedBlob>,
    onResult: (blob: ListedBlob, r: AddResult) => Promise<void>,
  ): Promise<void> {
    const window: { blob: ListedBlob; loaded: Promise<Loaded> }[] = [];
    let bytes = 0;
    const next = async () => {
      const head = window.shift() as (typeof window)[number];
      bytes -= head.blob.size;
      await onResult(head.blob, await this.store(root, head.blob, await head.loaded));
    };
    try {
      for await (const blob of blobs) {
        if (this.has(blob.sha1)) {
          await onResult(blob, { status: 'known', sha1: blob.sha1 });
          continue;
        }
        while (window.length >= READ_AHEAD || (window.length > 0 && bytes + blob.size > READ_AHEAD_BYTES))
          await next();
        const loaded = this.load(root, blob);
        loaded.catch(() => undefined); // seen when its turn comes
        window.push({ blob, loaded });
        bytes += blob.size;
      }
      while (window.length > 0) await next();
    } finally {
      // An error midway: let the reads already started finish before their handles are forgotten.
      await Promise.allSettled(window.map((w) => w.loaded));
    }
  }

  /**
   * Reads a file whole and hashes it (a large one only later, streamed into a pack of its own). One readFile
   * (no FileHandle: its open, stat and close each cost a promise round trip, 1.5 s of 8 for 20,000 files);
   * owner, mode and time come from the listing, taken moments before of a file that never changes.
   */
  private async load(root: string, blob: ListedBlob): Promise<Loaded> {
    const meta = { mode: blob.mode, uid: blob.uid, gid: blob.gid, mtimeMs: blob.mtimeMs };
    if (blob.size >= this.packSize) return { kind: 'large', size: blob.size, meta };
    const data = await readFileNoFollow(join(root, blob.path)).catch((err: unknown) => {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    });
    if (!data) return { kind: 'vanished' };
    // It grew past the pack size after all: stream it as a pack of its own.
    if (data.length >= this.packSize) return { kind: 'large', size: data.length, meta };
    return { kind: 'read', data, meta, actual: createHash('sha1').update(data).digest('hex') };
  }

  private async store(root: string, blob: ListedBlob, l: Loaded): Promise<AddResult> {
    if (l.kind === 'vanished') return { status: 'vanished', sha1: blob.sha1 };
    if (l.kind === 'large') return this.addLarge(root, blob, l.size, l.meta);
    this.stats.readBytes += l.data.length;
    const { actual } = l;
    const stored = !this.has(actual);
    if (stored) {
      const sink = await this.openSink();
      const offset = await sink.writeEntry(
        { name: blobPath(actual), size: l.data.length, ...l.meta },
        l.data,
      );
      this.record(actual, offset, l.data.length);
      if (sink.tarBytes >= this.packSize) await this.cut();
    }
    if (actual !== blob.sha1) return { status: 'mismatch', sha1: actual, claimed: blob.sha1, actual, stored };
    return { status: 'added', sha1: actual };
  }

  /** Stores the open pack, if any, and its index file. Call once every blob was added. */
  async finish(): Promise<void> {
    await this.cut();
  }

  /** Drops the open pack (on an error or abort): nothing of it reaches the backend. */
  async abort(): Promise<void> {
    await this.sink?.discard();
    this.sink = undefined;
    this.entries = [];
    this.pending.clear();
  }

  private async addLarge(root: string, blob: ListedBlob, size: number, meta: Omit<TarFile, 'name' | 'size'>) {
    await this.cut();
    const first = await this.streamPack(root, blob, blob.sha1, size, meta);
    if (first === blob.sha1) return { status: 'added' as const, sha1: blob.sha1 };
    // The name lied: that pack was dropped. Read again, now knowing the name the content needs.
    if (this.has(first))
      return { status: 'mismatch' as const, sha1: first, claimed: blob.sha1, actual: first, stored: false };
    const second = await this.streamPack(root, blob, first, size, meta);
    if (second !== first) {
      throw new Error(`${blob.path} changed while it was read (SHA-1 ${first}, then ${second})`);
    }
    return { status: 'mismatch' as const, sha1: first, claimed: blob.sha1, actual: first, stored: true };
  }

  /** One file as one pack under `name`; kept only when the content's SHA-1 is `name`. Returns the SHA-1. */
  private async streamPack(
    root: string,
    blob: ListedBlob,
    name: string,
    size: number,
    meta: Omit<TarFile, 'name' | 'size'>,
  ) {
    const hash = createHash('sha1');
    const fh = await open(join(root, blob.path), constants.O_RDONLY | constants.O_NOFOLLOW);
    const sink = await this.openSink();
    try {
      // A generator, not pipe(): a read error must reach the writer instead of leaving it waiting.
      const src = fh.createReadStream({ start: 0, end: size - 1, autoClose: false });
      const hashed = (async function* () {
        for await (const chunk of src) {
          hash.update(chunk as Buffer);
          yield chunk as Buffer;
        }
      })();
      const offset = await sink.writeStreamedEntry({ name: blobPath(name), size, ...meta }, hashed);
      this.stats.readBytes += size;
      const actual = hash.digest('hex');
      if (actual !== name) {
        await this.abort();
        return actual;
      }
      this.record(actual, offset, size);
      await this.cut();
      return actual;
    } catch (err) {
      await this.abort();
      throw err;
    } finally {
      await fh.close().catch(() => undefined);
    }
  }

  private async openSink(): Promise<PackSink> {
    if (!this.sink) {
      await mkdir(this.o.spoolDir, { recursive: true, mode: 0o700 });
      this.sink = new PackSink(this.o.spoolDir, this.o.encoding, this.o.signal);
    }
    return this.sink;
  }

  private record(sha1: string, offset: number, size: number): void {
    this.entries.push({ sha1: Buffer.from(sha1, 'hex'), offset, size });
    this.pending.add(sha1);
    this.stats.blobs++;
  }

  /** Stores the open pack, then its index file, then makes its blobs known to the in-memory index. */
  private async cut(): Promise<void> {
    const sink = this.sink;
    if (!sink) return;
    this.sink = undefined;
    try {
      const { id, storedSize } = await sink.finish();
      await putSpooled(this.o.backend, packKey(id), sink.path, storedSize);
      const pack: PackRecord = {
        id,
        storedSize,
        codec: this.o.encoding.codec.name,
        encrypted: !!this.o.encoding.encrypt,
      };
      const indexed = { pack, blobs: this.entries };
      await writeIndexFile(this.o.backend, this.o.encoding, [indexed], this.o.cache);
      this.o.index.addPack(pack, this.entries);
      this.stats.packs++;
      this.stats.storedBytes += storedSize;
    } catch (err) {
      await sink.discard();
      throw err;
    } finally {
      await rm(sink.path, { force: true });
      this.entries = [];
      this.pending.clear();
    }
  }
}

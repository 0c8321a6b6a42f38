import { createHash, randomBytes } from 'node:crypto';
import { constants, createWriteStream, readFile } from 'node:fs';
import { lstat, mkdir, open, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { HashTap } from '../archive/tap.js';
import { onPath } from '../common/on-path.js';
import type { Backend } from '../storage/backend.js';
import { BlobIndex } from './blob-index.js';
import type { StoreEncoding } from './encoding.js';
import { FileFrames, type FrameTable, framesFor } from './frames.js';
import type { IndexCache } from './index-cache.js';
import { BLOB_RECORD_BYTES, type DecodedPack, type PackRecord, RecordsBuilder } from './index-file.js';
import { blobPath, packKey } from './layout.js';
import type { ListedBlob } from './listing.js';
import { PackSink } from './pack-sink.js';
import { putSpooled, sha256OfFile, writeIndexFile } from './store-io.js';
import { TarFeed, TarSplitter } from './tar-feed.js';
import type { TarFile } from './tar-header.js';
import { BLOCK, entryBytes } from './tar-header.js';
import { hashFiles, type TarPack, tarPack } from './tar-pack.js';

/**
 * Uncompressed tar bytes per pack built here, from files read whole into memory (`add`, `relay`). Measured
 * on a 153 MB Moodle-like filedir (3,000 files) into s3rver: 4 MiB packs made 476 requests a GB, 16 MiB
 * 137, 64 MiB 91, at about the same speed; but a file just under the pack size is held in memory whole,
 * and 64 MiB packs took peak RSS past 150 MB.
 */
export const DEFAULT_PACK_SIZE = 16 * 1024 * 1024;
/**
 * Uncompressed bytes per pack that tar writes straight into the compressor (`addAll`): nothing is held in
 * memory, so packs can be larger; each costs three processes (tar, compressor, hasher), ~16 ms of
 * this process's time apiece to start on the test machine.
 */
export const DEFAULT_GROUP_SIZE = 64 * 1024 * 1024;

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
  /** The same for packs tar writes (addAll). */
  groupSize?: number;
  /**
   * Store packs in the background while the next fills, and write an index file per batch of packs (a
   * backup). Off (prune's repack): each pack is stored and indexed before the writer goes on, so a pack
   * counted in `stats.packs` is in the store's index files.
   */
  background?: boolean;
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

/** Packs being compressed to their end and stored while the next one fills. */
const IN_FLIGHT = 2;
/** Blobs an index file covers at most (36 bytes each in it; ~100 in memory until it is written). */
const INDEX_BATCH_BLOBS = 65_536;
/**
 * Files in one group at most: bounds the listed entries held while tar packs them (up to three groups' worth:
 * two packing, one filling). 16,384 held ~10 MB of entries and their garbage: a 1st backup of a million tiny
 * blobs peaked at 153–156 MB, 139 with 8,192 (no slower there; 200,000 files of 5.5 KB: 10.5 s against 10.2).
 */
const GROUP_FILES = 8_192;
/**
 * Groups packed at once. One at a time left both cores idle while each group's processes started and its
 * compressor drained (18 groups of 1.1 GB: 3.1 s alone, 2.4–2.6 s two at a time; docs/design.md).
 */
const GROUPS_AT_ONCE = 2;

type Emit = (blob: ListedBlob, r: AddResult) => Promise<void>;

/** A pack written to a spool file: its id and size once finished, or dropped. */
interface SpooledPack {
  readonly path: string;
  finish(): Promise<{ id: string; storedSize: number; frames?: FrameTable }>;
  discard(): Promise<void>;
}

async function exists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    (err: NodeJS.ErrnoException) => err.code !== 'ENOENT',
  );
}

function hasOpenssl(): boolean {
  return onPath('openssl');
}

/** Names given to tar and not yet read back: bounds memory whatever the number of new files. */
const QUEUED = 4096;

type Meta = Omit<TarFile, 'name' | 'size'>;
type Loaded =
  | { kind: 'vanished' }
  | { kind: 'large'; size: number; meta: Meta }
  | { kind: 'read'; data: Buffer[]; size: number; meta: Meta; actual: string };

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
  private entries = new RecordsBuilder();
  /** Hashes in the open pack (not yet in the index); a pack holds a few hundred, not a million. */
  private pending = new Set<string>();
  /** Hashes of the group tar is packing (addAll). */
  private readonly grouped = new Set<string>();
  /** The hashes of packs being stored in the background. */
  private readonly storing: Set<string>[] = [];
  private inflight: Promise<void>[] = [];
  /** Packs stored whose index file is not written yet. */
  private unindexed: DecodedPack[] = [];
  private unindexedBlobs = 0;
  /** The last group relayed (packGroup's fallback), which the next one waits for. */
  private relaying: Promise<void> = Promise.resolve();
  /** Hashes of groups being relayed: not in `grouped` (the relay stores them), still not settled. */
  private readonly relayed = new Set<string>();

  private readonly o: Omit<PackWriterOptions, 'index'>;
  /** The store's index until release(): not in `o`, so that nothing else holds it then. */
  private index: BlobIndex;

  constructor(options: PackWriterOptions) {
    const { index, ...o } = options;
    this.o = o;
    this.index = index;
    this.packSize = o.packSize ?? DEFAULT_PACK_SIZE;
  }

  /**
   * After finish(), when nothing more will be stored: lets the index go (a million blobs' tables are 20+ MB
   * that the rest of a backup, its lists, does not need). The writer then knows no blob.
   */
  release(): void {
    this.index = new BlobIndex();
  }

  /** Whether the store (or the pack being written) already holds this blob. */
  has(sha1: string): boolean {
    return (
      this.pending.has(sha1) ||
      this.grouped.has(sha1) ||
      this.storing.some((p) => p.has(sha1)) ||
      this.index.has(Buffer.from(sha1, 'hex'))
    );
  }

  /** Stores one listed blob unless the store holds its name already. `root` is the dataroot. */
  async add(root: string, blob: ListedBlob): Promise<AddResult> {
    if (this.has(blob.sha1)) return { status: 'known', sha1: blob.sha1 };
    const l = await this.load(root, blob);
    return l.kind === 'large' ? this.addLarge(root, blob, l.size, l.meta) : this.store(blob, l);
  }

  /**
   * Stores every listed blob the store lacks, in groups of up to the group size: for each, GNU tar reads the
   * files straight into the compressor (Node sees only the compressed pack) while `openssl sha1` hashes the
   * same files from the page cache; the pack is kept only when every member is what the listing said and its
   * SHA-1 is its name, else the group goes through `relay` (which stores a corrupt file under its real hash).
   * Reading a file at a time in Node cost 20 s for 20,000 files (1.1 GB) against 2.3 s for `tar | zstd`,
   * relaying tar's stream through Node ~2x the CPU of `tar | zstd` (docs/design.md). Results come one at a
   * time (never two `onResult` calls at once), not in the listing's order.
   */
  async addAll(
    root: string,
    blobs: AsyncIterable<ListedBlob>,
    onResult: (blob: ListedBlob, r: AddResult) => Promise<void>,
  ): Promise<void> {
    let chain = Promise.resolve();
    const emit: Emit = (blob, r) => {
      chain = chain.then(() => onResult(blob, r));
      return chain;
    };
    const compressor = this.o.encoding.codec.command?.(this.o.encoding.level);
    if (!compressor || !hasOpenssl()) {
      await this.relay(root, blobs, emit);
      await chain;
      return;
    }
    let group: ListedBlob[] = [];
    let bytes = 0;
    // The same content twice (filedir/ and trashdir/) while its first copy's group is packed: settled after.
    let twice: ListedBlob[] = [];
    const packing: Promise<void>[] = [];
    const unsettled = (sha1: string) => this.grouped.has(sha1) || this.relayed.has(sha1);
    // Waits until fewer than `room` groups are being packed, then settles the twins whose group is done.
    const settle = async (room: number) => {
      while (packing.length >= room && packing.length > 0) await packing.shift();
      const again = twice;
      twice = [];
      for (const blob of again) {
        if (unsettled(blob.sha1)) twice.push(blob);
        else if (this.has(blob.sha1)) await emit(blob, { status: 'known', sha1: blob.sha1 });
        else add(blob); // its twin vanished: read this one
      }
    };
    const flush = async (room: number) => {
      const g = group;
      group = [];
      bytes = 0;
      if (g.length > 0) {
        const job = this.packGroup(root, g, compressor, emit);
        job.catch(() => undefined); // awaited by settle
        packing.push(job);
      }
      await settle(room);
    };
    const add = (blob: ListedBlob) => {
      if (unsettled(blob.sha1)) return void twice.push(blob);
      group.push(blob);
      this.grouped.add(blob.sha1);
      bytes += entryBytes(blob.size);
    };
    let seen = 0;
    try {
      for await (const blob of blobs) {
        this.o.signal?.throwIfAborted();
        seen++;
        if (!unsettled(blob.sha1) && this.has(blob.sha1)) {
          await emit(blob, { status: 'known', sha1: blob.sha1 });
          continue;
        }
        add(blob);
        if (bytes >= (this.o.groupSize ?? DEFAULT_GROUP_SIZE) || group.length >= GROUP_FILES)
          await flush(GROUPS_AT_ONCE);
      }
      // Each round settles at least one copy of every content still waiting: bounded by the files seen.
      for (let i = 0; (group.length > 0 || twice.length > 0 || packing.length > 0) && i <= seen + 1; i++)
        await flush(1);
      if (group.length > 0 || twice.length > 0) throw new Error('blobs left unsettled after the last group');
      await chain;
    } finally {
      // On an error the other group still packing is let finish: no tar or compressor outlives this call.
      await Promise.allSettled(packing);
      this.grouped.clear();
      this.relayed.clear();
    }
  }

  /**
   * One group through tar into the compressor, checked against the listing and the hashes. Every file of
   * the group is settled here: stored, vanished, or (on any surprise) handed to `relay`.
   */
  private async packGroup(
    root: string,
    group: ListedBlob[],
    compressor: { cmd: string; args: string[] },
    emit: Emit,
  ): Promise<void> {
    await mkdir(this.o.spoolDir, { recursive: true, mode: 0o700 });
    const list = join(this.o.spoolDir, `list-${randomBytes(8).toString('hex')}`);
    await writeFile(list, group.map((b) => `${b.path}\0`).join(''), { mode: 0o600 });
    const path = join(this.o.spoolDir, `pack-${randomBytes(8).toString('hex')}.tmp`);
    // Framed packs: GNU tar writes the group's tar here, and the frames are cut from it when the pack is stored.
    const raw = `${path}.tar`;
    const tap = new HashTap();
    try {
      const encrypt = this.o.encoding.encrypt;
      const framed = framesFor(this.o.encoding);
      let tp: TarPack;
      let hashes: Map<string, string>;
      if (framed) {
        // Not tar's pipe relayed through this process: that was a buffer a 64 KiB read, and the garbage held
        // ~40 MB more RSS (docs/design.md, "Frames inside packs").
        const fh = await open(raw, 'wx', 0o600);
        try {
          tp = tarPack(root, list, null, fh.fd);
          [hashes] = await Promise.all([
            hashFiles(root, list),
            tp.done.catch((err) => Promise.reject(shortWrite(err))),
          ]);
        } finally {
          await fh.close();
        }
      } else if (encrypt) {
        // age runs here: the compressed bytes pass through this process on their way to the spool.
        tp = tarPack(root, list, compressor);
        const written = pipeline(
          [tp.stream as Readable, encrypt(), tap, createWriteStream(path, { mode: 0o600 })],
          this.o.signal ? { signal: this.o.signal } : {},
        );
        [hashes] = await Promise.all([hashFiles(root, list), written]);
      } else {
        // The compressor writes the spool file itself; the pack's sha256 is read back from the page cache
        // when it is stored, in the background (see sink below).
        const fh = await open(path, 'wx', 0o600);
        try {
          tp = tarPack(root, list, compressor, fh.fd);
          [hashes] = await Promise.all([hashFiles(root, list), tp.done]);
        } finally {
          await fh.close();
        }
      }
      const members = new Map(tp.members.map((m) => [m.name, m]));
      const entries = new RecordsBuilder();
      const vanished: ListedBlob[] = [];
      let readBytes = 0;
      let surprise = members.size !== tp.members.length;
      for (const b of group) {
        const m = members.get(b.path);
        members.delete(b.path);
        // Not archived: gone, or there but unreadable (tar skips both): only the first is "vanished".
        if (!m) {
          if (await exists(join(root, b.path))) surprise = true;
          else vanished.push(b);
        } else if (m.type !== '-' || m.size !== b.size || hashes.get(b.path) !== b.sha1) surprise = true;
        else {
          entries.push(b.sha1, (m.block + 1) * BLOCK, m.size);
          readBytes += m.size;
        }
      }
      if (surprise || members.size > 0) {
        await Promise.all([rm(path, { force: true }), rm(raw, { force: true })]);
        // The relay stores them (its has() must not see them as grouped); their twins still wait.
        for (const b of group) {
          this.grouped.delete(b.sha1);
          this.relayed.add(b.sha1);
        }
        // The relay writes into the writer's one open pack: another group's relay waits its turn.
        const turn = this.relaying.then(async () => {
          await this.relay(root, group, emit);
          await this.cut();
        });
        this.relaying = turn.catch(() => undefined);
        try {
          await turn;
        } finally {
          for (const b of group) this.relayed.delete(b.sha1);
        }
        return;
      }
      if (entries.length > 0) {
        const sink: SpooledPack = {
          path,
          finish: async () =>
            framed
              ? this.framePack(raw, path)
              : encrypt
                ? { id: tap.digest(), storedSize: tap.bytes }
                : sha256OfFile(path, this.o.signal),
          discard: async () => {
            await Promise.all([rm(path, { force: true }), rm(raw, { force: true })]);
          },
        };
        await this.handOff(sink, entries.records(), new Set(group.map((b) => b.sha1)));
      } else await Promise.all([rm(path, { force: true }), rm(raw, { force: true })]);
      this.stats.blobs += entries.length;
      this.stats.readBytes += readBytes;
      const gone = new Set(vanished);
      for (const b of group) {
        this.grouped.delete(b.sha1);
        await emit(b, { status: gone.has(b) ? 'vanished' : 'added', sha1: b.sha1 });
      }
    } catch (err) {
      await Promise.all([rm(path, { force: true }), rm(raw, { force: true })]);
      throw err;
    } finally {
      await rm(list, { force: true });
    }
  }

  /** A group's tar file (`raw`, removed after) as a framed pack at `path`: its id, size and frame table. */
  private async framePack(
    raw: string,
    path: string,
  ): Promise<{ id: string; storedSize: number; frames: FrameTable }> {
    const fh = await open(raw, 'r');
    try {
      const frames = new FileFrames(fh, this.o.encoding.level ?? 3);
      const tap = new HashTap();
      const encrypt = this.o.encoding.encrypt;
      await pipeline(
        [frames, ...(encrypt ? [encrypt()] : []), tap, createWriteStream(path, { mode: 0o600 })],
        this.o.signal ? { signal: this.o.signal } : {},
      );
      return { id: tap.digest(), storedSize: tap.bytes, frames: frames.table() };
    } finally {
      await fh.close();
      await rm(raw, { force: true });
    }
  }

  /** A file tar left out: vanished when it is gone; still there, it could not be read, and that fails the run. */
  private async skipped(root: string, blob: ListedBlob, f: TarFeed, emit: Emit): Promise<void> {
    if (await exists(join(root, blob.path)))
      throw new Error(`${blob.path} could not be read: ${f.warnings().trim() || 'tar left it out'}`);
    await emit(blob, { status: 'vanished', sha1: blob.sha1 });
  }

  /** The listed blobs through one tar stream that this process splits and hashes (see TarFeed). */
  private async relay(
    root: string,
    blobs: AsyncIterable<ListedBlob> | Iterable<ListedBlob>,
    emit: Emit,
  ): Promise<void> {
    const large: ListedBlob[] = [];
    const queued: ListedBlob[] = [];
    let feed: TarFeed | undefined;
    let reading: Promise<void> | undefined;
    const broke: { err?: unknown; failed: boolean } = { failed: false };
    let wake: (() => void) | undefined;
    const read = async (f: TarFeed) => {
      const split = new TarSplitter(this.packSize - 1);
      for await (const chunk of f.child.stdout as AsyncIterable<Buffer>) {
        for (const file of split.push(chunk)) {
          let blob = queued.shift();
          // Not in tar's stream: deleted before tar reached it, or unreadable (tar said so on stderr).
          while (blob && blob.path !== file.path) {
            await this.skipped(root, blob, f, emit);
            blob = queued.shift();
          }
          wake?.();
          if (!blob) throw new Error(`tar archived ${file.path}, which was not asked for`);
          if (file.type !== '0') {
            throw new Error(
              `${blob.path} is no longer a regular file (tar saw type '${file.type}'): not stored`,
            );
          }
          const meta = { mode: blob.mode, uid: blob.uid, gid: blob.gid, mtimeMs: blob.mtimeMs };
          if (!file.data)
            large.push({ ...blob, size: file.size }); // it grew past the pack size
          else
            await emit(
              blob,
              await this.store(blob, {
                kind: 'read',
                data: file.data,
                size: file.size,
                meta,
                actual: file.sha1,
              }),
            );
        }
      }
      await f.exit;
      if (!split.done) throw new Error('tar output ended before the end of the archive');
      for (const blob of queued.splice(0)) await this.skipped(root, blob, f, emit);
    };
    try {
      for await (const blob of blobs) {
        if (broke.failed) throw broke.err;
        if (this.has(blob.sha1)) {
          await emit(blob, { status: 'known', sha1: blob.sha1 });
          continue;
        }
        if (blob.size >= this.packSize) {
          large.push(blob);
          continue;
        }
        if (!feed) {
          const f = new TarFeed(root);
          feed = f;
          reading = read(f);
          reading.catch((err: unknown) => {
            broke.err = err;
            broke.failed = true;
            f.kill();
            wake?.();
          });
        }
        while (queued.length >= QUEUED && !broke.failed) await new Promise<void>((r) => (wake = r));
        if (broke.failed) throw broke.err;
        queued.push(blob);
        await feed.name(blob.path);
      }
      feed?.end();
      await reading;
      for (const blob of large) {
        this.o.signal?.throwIfAborted();
        await emit(blob, await this.addLarge(root, blob, blob.size, blob));
      }
    } finally {
      feed?.kill();
      await reading?.catch(() => undefined);
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
    return {
      kind: 'read',
      data: [data],
      size: data.length,
      meta,
      actual: createHash('sha1').update(data).digest('hex'),
    };
  }

  private async store(blob: ListedBlob, l: Exclude<Loaded, { kind: 'large' }>): Promise<AddResult> {
    if (l.kind === 'vanished') return { status: 'vanished', sha1: blob.sha1 };
    this.stats.readBytes += l.size;
    const { actual } = l;
    const stored = !this.has(actual);
    if (stored) {
      const sink = await this.openSink();
      const offset = await sink.writeEntry({ name: blobPath(actual), size: l.size, ...l.meta }, l.data);
      this.record(actual, offset, l.size);
      if (sink.tarBytes >= this.packSize) await this.cut();
    }
    if (actual !== blob.sha1) return { status: 'mismatch', sha1: actual, claimed: blob.sha1, actual, stored };
    return { status: 'added', sha1: actual };
  }

  /**
   * Stores the open pack, if any, waits for the packs still being stored, and writes the index file of
   * every pack not yet in one. Call once every blob was added: only then are the new blobs in the store.
   */
  async finish(): Promise<void> {
    await this.cut();
    await this.drain();
    await this.writeIndex();
  }

  /**
   * On an error or abort: drops the open pack (nothing of it reaches the backend), lets the packs already
   * being stored finish, and indexes those that were (best effort: an unindexed pack is only an orphan that
   * prune removes, its blobs read again next time).
   */
  async abort(): Promise<void> {
    await this.dropOpen();
    await Promise.allSettled(this.inflight);
    this.inflight = [];
    await this.writeIndex().catch(() => undefined);
  }

  /** Drops the open pack only. */
  private async dropOpen(): Promise<void> {
    await this.sink?.discard();
    this.sink = undefined;
    this.entries = new RecordsBuilder();
    this.pending = new Set();
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
        await this.dropOpen();
        return actual;
      }
      this.record(actual, offset, size);
      await this.cut();
      return actual;
    } catch (err) {
      await this.dropOpen();
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
    this.entries.push(sha1, offset, size);
    this.pending.add(sha1);
    this.stats.blobs++;
  }

  /**
   * Hands the open pack to the background and opens none: the next blob opens a new one while this one is
   * compressed to its end, stored and (for a local target) synced. At most `IN_FLIGHT` packs are stored at
   * once; waiting for each in turn stalled tar's stream on every cut (70 packs: 6 s of puts, measured).
   */
  private async cut(): Promise<void> {
    const sink = this.sink;
    if (!sink) return;
    const entries = this.entries;
    const pending = this.pending;
    this.sink = undefined;
    this.entries = new RecordsBuilder();
    this.pending = new Set();
    await this.handOff(sink, entries.records(), pending);
  }

  /** A finished pack's store, in the background (see cut). `pending`: its hashes until it is indexed. */
  private async handOff(sink: SpooledPack, entries: Buffer, pending: Set<string>): Promise<void> {
    this.storing.push(pending);
    const job = this.storePack(sink, entries).finally(() => {
      this.storing.splice(this.storing.indexOf(pending), 1);
    });
    job.catch(() => undefined); // awaited by drain() or the next cut
    this.inflight.push(job);
    if (!this.o.background) {
      await this.drain();
      await this.writeIndex();
    }
    while (this.inflight.length >= IN_FLIGHT) await this.inflight.shift();
  }

  private async drain(): Promise<void> {
    while (this.inflight.length > 0) await this.inflight.shift();
  }

  /** Stores one finished pack; its blobs become known to the in-memory index, its index file comes later. */
  private async storePack(sink: SpooledPack, entries: Buffer): Promise<void> {
    try {
      const { id, storedSize, frames } = await sink.finish();
      await putSpooled(this.o.backend, packKey(id), sink.path, storedSize);
      const pack: PackRecord = {
        id,
        storedSize,
        codec: this.o.encoding.codec.name,
        encrypted: !!this.o.encoding.encrypt,
        ...(frames ? { frames } : {}),
      };
      this.index.addRecords(pack, entries);
      this.unindexed.push({ pack, records: entries });
      this.unindexedBlobs += entries.length / BLOB_RECORD_BYTES;
      this.stats.packs++;
      this.stats.storedBytes += storedSize;
    } catch (err) {
      await sink.discard();
      throw err;
    } finally {
      await rm(sink.path, { force: true });
    }
    if (this.unindexedBlobs >= INDEX_BATCH_BLOBS) await this.writeIndex();
  }

  /**
   * One index file for the packs stored since the last one (all of them stored first: an index never names
   * a pack that is not there). A file per pack cost a put (and a sync) per 16 MiB.
   */
  private async writeIndex(): Promise<void> {
    if (this.unindexed.length === 0) return;
    const packs = this.unindexed;
    this.unindexed = [];
    this.unindexedBlobs = 0;
    await writeIndexFile(this.o.backend, this.o.encoding, packs, this.o.cache);
  }
}

/**
 * tar writing a group's tar into the spool: a short write there is the spool's disk full, which tar says as
 * "Wrote only N of M bytes", naming no errno. Given ENOSPC, the backup names the spool and what to do.
 */
function shortWrite(err: unknown): unknown {
  const message = (err as Error)?.message ?? '';
  if (!/Wrote only \d+ of \d+ bytes/.test(message)) return err;
  const said = message.replace(/\s*\n\s*/g, '; ');
  return Object.assign(new Error(`no space left on the spool's disk (${said})`, { cause: err }), {
    code: 'ENOSPC',
  });
}

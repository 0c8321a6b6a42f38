import { createHash } from 'node:crypto';
import { type FileHandle, mkdir, open } from 'node:fs/promises';
import { dirname } from 'node:path';
import { buffer } from 'node:stream/consumers';
import { AgePayload } from '../archive/age-range.js';
import { AGE_HEADER_MAX, AGE_NONCE, AgeDamage, ageHeaderEnd } from '../archive/age-stream.js';
import { SidecarError } from '../common/errors.js';
import type { Backend } from '../storage/backend.js';
import type { StoreEncoding } from './encoding.js';
import { canFrame, decompressFrame, type FrameRun, planRuns } from './frames.js';
import type { PackRecord } from './index-file.js';
import { packKey } from './layout.js';
import type { UntarredMember } from './pack-untar.js';

/** One blob to read out of a framed pack: where its data lies in the pack's tar, and the file to write. */
export interface FramedBlob {
  sha1: string;
  offset: number;
  size: number;
  dest: string;
}

/**
 * Two runs of needed frames at most this many compressed bytes apart are read as one request: at S3's ~50 ms a
 * request and ~100 MB/s, a request costs about as much as 4 MiB of transfer; locally a read call is cheap.
 */
const RUN_GAP = 1024 * 1024;
/** Above this share of the pack's bytes the whole pack is read instead (one request, tar, its sha256 checked). */
const WHOLE_SHARE = 0.5;

/**
 * The runs of frames to read for `blobs` of `pack`, or null when the pack is better read whole: not framed,
 * encrypted with no key here to open its header, a backend without ranged reads, a blob whose place in the
 * pack is not known, or most of the pack needed anyway.
 */
export function framedRuns(
  backend: Pick<Backend, 'getRange'>,
  pack: PackRecord,
  blobs: readonly { offset: number | undefined; size: number }[],
  encoding: Pick<StoreEncoding, 'fileKey'>,
): FrameRun[] | null {
  if (!pack.frames || (pack.encrypted && !encoding.fileKey) || !backend.getRange || !canFrame()) return null;
  if (blobs.some((b) => b.offset === undefined)) return null;
  let runs: FrameRun[];
  try {
    runs = planRuns(pack.frames, blobs as readonly { offset: number; size: number }[], RUN_GAP);
  } catch (err) {
    // An index whose blob lies past its pack's frames: the whole pack is read, and tar says what it holds.
    if (err instanceof RangeError) return null;
    throw err;
  }
  const bytes = runs.reduce((n, r) => n + r.end - r.start, 0);
  return bytes <= pack.storedSize * WHOLE_SHARE ? runs : null;
}

/**
 * Reads `runs` of a framed pack (framedRuns) and writes each blob's bytes to its `dest`, checking its SHA-1
 * against its name: the pack's sha256 cannot be checked from part of it, each blob's hash is. Frames inside a
 * run that hold none of the blobs are skipped undecoded. Returns what untarPack returns, with attributes unknown
 * (mode -1: the caller sets the snapshot's). On any error the files already written are the caller's to discard
 * (a staging or scratch directory), as with untarPack. Resolves with the compressed bytes read.
 */
export async function fetchFrames(o: {
  backend: Backend;
  pack: PackRecord;
  runs: readonly FrameRun[];
  blobs: readonly FramedBlob[];
  encoding: Pick<StoreEncoding, 'fileKey'>;
  signal?: AbortSignal;
}): Promise<{ members: Map<string, UntarredMember>; bytesRead: number }> {
  const table = o.pack.frames;
  if (!table) throw new Error(`pack ${o.pack.id} is not framed`);
  const damaged = (why: string) =>
    new SidecarError(
      'INTEGRITY_FAILED',
      `pack ${o.pack.id} in ${o.backend.location}: ${why}`,
      'the stored pack was changed or damaged; run `verify --read-data`',
    );
  const sorted = [...o.blobs].sort((a, b) => a.offset - b.offset);
  const writer = new BlobWriter(sorted, damaged);
  const F = table.frameBytes;
  const ranges = new PackRanges(o.backend, o.pack);
  try {
    await writer.empties();
    const plain = o.pack.encrypted ? await ranges.openAge(o.encoding, damaged) : null;
    if (plain && plain.plainSize !== table.lengths.reduce((n, l) => n + l, 0))
      throw damaged(`its frame table does not add up to its ${plain.plainSize} bytes inside age`);
    for (const run of o.runs) {
      o.signal?.throwIfAborted();
      let body: AsyncIterable<Buffer>;
      if (plain) {
        const span = plain.span(run.start, run.end);
        body = plain.plain(await ranges.read(span.from, span.to), run.start, run.end);
      } else body = await ranges.read(run.start, run.end);
      let held: Buffer[] = [];
      let have = 0;
      let k = run.first;
      for await (const chunk of asDamage(body, damaged)) {
        held.push(chunk);
        have += chunk.length;
        while (k <= run.last && have >= (table.lengths[k] as number)) {
          const all = held.length === 1 ? (held[0] as Buffer) : Buffer.concat(held, have);
          const len = table.lengths[k] as number;
          const frame = all.subarray(0, len);
          held = len < all.length ? [all.subarray(len)] : [];
          have -= len;
          if (writer.wants(k * F, F)) {
            const data = await decompressFrame(frame, F).catch((err: unknown) => {
              throw damaged(`frame ${k} does not decode (${(err as Error).message})`);
            });
            if (k < table.lengths.length - 1 && data.length !== F)
              throw damaged(`frame ${k} holds ${data.length} bytes, not ${F}`);
            await writer.push(k * F, data);
          }
          k++;
        }
      }
      // Fewer bytes than asked for (the range is exactly the run's frames: never more, see above).
      if (k <= run.last)
        throw damaged(`bytes ${run.start}–${run.end} do not hold frames ${run.first}–${run.last}`);
    }
    writer.finished();
  } finally {
    await writer.close();
  }
  return { members: writer.members, bytesRead: ranges.bytesRead };
}

/** age's findings inside a pack (a chunk that does not open, cut short) as the pack's damage. */
async function* asDamage(
  body: AsyncIterable<Buffer>,
  damaged: (why: string) => Error,
): AsyncGenerator<Buffer> {
  try {
    yield* body;
  } catch (err) {
    throw err instanceof AgeDamage ? damaged(err.message) : err;
  }
}

/** An age header and its payload's nonce fit in this much, but for an unusual number of recipients. */
const AGE_HEAD = 16 * 1024;

/** Byte ranges of one stored pack, counted, refused when the server sends more than asked for. */
class PackRanges {
  bytesRead = 0;
  private readonly key: string;

  constructor(
    private readonly backend: Backend,
    private readonly pack: PackRecord,
  ) {
    this.key = packKey(pack.id);
  }

  async read(start: number, end: number): Promise<AsyncIterable<Buffer>> {
    const getRange = this.backend.getRange;
    if (!getRange) throw new Error(`${this.backend.location} cannot read part of an object`);
    const body = await getRange.call(this.backend, this.key, start, end);
    return this.counted(body, start, end);
  }

  /** The pack's age header read and opened with the configured key: where its payload's chunks are. */
  async openAge(enc: Pick<StoreEncoding, 'fileKey'>, damaged: (why: string) => Error): Promise<AgePayload> {
    if (!enc.fileKey) throw new Error(`pack ${this.pack.id} is encrypted and no key is configured`);
    let head = Buffer.alloc(0);
    let end = -1;
    for (let want = AGE_HEAD; end < 0 || head.length < end + AGE_NONCE; want *= 4) {
      const to = Math.min(want, AGE_HEADER_MAX, this.pack.storedSize);
      if (to <= head.length) throw damaged('no whole age header at its start');
      head = Buffer.concat([head, await buffer(await this.read(head.length, to))]);
      end = ageHeaderEnd(head);
    }
    const fileKey = await enc.fileKey(head.subarray(0, end)).catch((err: unknown) => {
      if (err instanceof SidecarError) throw err;
      throw damaged(`its age header does not open (${(err as Error).message})`);
    });
    try {
      return new AgePayload(fileKey, head.subarray(end, end + AGE_NONCE), end, this.pack.storedSize);
    } catch (err) {
      throw err instanceof AgeDamage ? damaged(err.message) : err;
    }
  }

  private async *counted(body: NodeJS.ReadableStream, start: number, end: number): AsyncGenerator<Buffer> {
    let got = 0;
    for await (const chunk of body as AsyncIterable<Buffer>) {
      got += chunk.length;
      this.bytesRead += chunk.length;
      if (got > end - start) {
        (body as { destroy?: () => void }).destroy?.();
        throw new SidecarError(
          'STORAGE_FAILED',
          `${this.backend.location} answered a read of bytes ${start}–${end} of pack ${this.pack.id} with more than those`,
          'the storage server ignores HTTP Range requests, which reading part of a pack needs; the pack is not damaged. Use an S3 server that honours Range',
        );
      }
      yield chunk;
    }
  }
}

/** Blob bytes in tar order into files, each hashed; a blob may span frames. */
class BlobWriter {
  readonly members = new Map<string, UntarredMember>();
  private next = 0;
  private cur: { b: FramedBlob; fh: FileHandle; hash: ReturnType<typeof createHash>; done: number } | null =
    null;

  constructor(
    private readonly blobs: readonly FramedBlob[],
    private readonly damaged: (why: string) => Error,
  ) {}

  /** Whether any blob's bytes lie in [base, base + len). */
  wants(base: number, len: number): boolean {
    if (this.cur) return true;
    while (this.next < this.blobs.length && (this.blobs[this.next] as FramedBlob).size === 0) this.next++;
    const b = this.blobs[this.next];
    return !!b && b.offset < base + len;
  }

  /** The empty blobs need no frame: written first. */
  async empties(): Promise<void> {
    for (const b of this.blobs)
      if (b.size === 0) await this.done(b, await create(b.dest), createHash('sha1'));
  }

  async push(base: number, data: Buffer): Promise<void> {
    const end = base + data.length;
    for (;;) {
      if (!this.cur) {
        while (this.next < this.blobs.length && (this.blobs[this.next] as FramedBlob).size === 0) this.next++;
        const b = this.blobs[this.next];
        if (!b || b.offset >= end) return;
        if (b.offset < base) throw this.damaged(`blob ${b.sha1} starts in a frame that was not read`);
        this.next++;
        this.cur = { b, fh: await create(b.dest), hash: createHash('sha1'), done: 0 };
      }
      const c = this.cur;
      const from = c.b.offset + c.done;
      if (from < base) throw this.damaged(`blob ${c.b.sha1} continues in a frame that was not read`);
      const to = Math.min(c.b.offset + c.b.size, end);
      const piece = data.subarray(from - base, to - base);
      c.hash.update(piece);
      await c.fh.write(piece);
      c.done += piece.length;
      if (c.done < c.b.size) return;
      this.cur = null;
      await this.done(c.b, c.fh, c.hash);
    }
  }

  /** Every blob was written whole. */
  finished(): void {
    const left = this.cur?.b ?? this.blobs.slice(this.next).find((b) => b.size > 0);
    if (left) throw this.damaged(`blob ${left.sha1} ends past the frames read`);
  }

  async close(): Promise<void> {
    await this.cur?.fh.close().catch(() => undefined);
    this.cur = null;
  }

  private async done(b: FramedBlob, fh: FileHandle, hash: ReturnType<typeof createHash>): Promise<void> {
    await fh.close();
    const actual = hash.digest('hex');
    if (actual !== b.sha1) throw this.damaged(`blob ${b.sha1} reads back with SHA-1 ${actual}`);
    this.members.set(b.sha1, { mode: -1, uid: -1, gid: -1, mtimeS: Number.NaN, size: b.size });
  }
}

/** The blob's file, its directory made when missing (a staging copy has most already). */
async function create(dest: string): Promise<FileHandle> {
  try {
    return await open(dest, 'w', 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    await mkdir(dirname(dest), { recursive: true });
    return open(dest, 'w', 0o600);
  }
}

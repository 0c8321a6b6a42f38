import { once } from 'node:events';
import type { FileHandle } from 'node:fs/promises';
import { type Duplex, Readable, Transform, type TransformCallback } from 'node:stream';
import zlib from 'node:zlib';

/**
 * Packs as independent zstd frames (docs/format.md, "Frames"): the pack's tar is cut every FRAME_BYTES and each
 * piece compressed on its own, so a restore that needs a few blobs reads and decompresses only the frames they
 * lie in (by range from S3), not the whole pack. The stored bytes are still one valid zstd stream: `zstd -d`
 * reads the frames one after another, so whole-pack readers and a by-hand restore see no difference.
 *
 * 1 MiB: on the bench's 1 GB dataroot, frames of 256 KiB stored 9% more than one frame a pack and took 1.4x the
 * CPU of 1 MiB ones, which stored 2% more (docs/design.md). A Moodle file is typically 100s of KB, so a frame
 * holds a few of them and a restore of 1% of a site still skips most frames.
 */
export const FRAME_BYTES = 1024 * 1024;

/** Where a framed pack's frames are: each frame holds `frameBytes` of tar (the last one the rest). */
export interface FrameTable {
  frameBytes: number;
  /** Compressed length of each frame, in order. */
  lengths: Uint32Array;
}

/** Node >= 22.15 has zstd in zlib; typed loosely because @types/node 20 does not know it. */
type ZstdCall = (buf: Buffer, opts: object, cb: (err: Error | null, out: Buffer) => void) => void;
const z = zlib as unknown as {
  createZstdCompress?: (o: object) => ZstdStream;
  zstdDecompress?: ZstdCall;
  constants: Record<string, number | undefined>;
};

/** zlib's stream: flush(kind) ends what was written as the kind says (ZSTD_e_end: a whole frame). */
type ZstdStream = Duplex & { flush(kind: number, cb: () => void): void };

/** Whether this Node can write and read frames (zstd in zlib). Without it packs are one frame, as before. */
export function canFrame(): boolean {
  return typeof z.createZstdCompress === 'function' && typeof z.zstdDecompress === 'function';
}

/** One frame back; more than `max` bytes out is an error (a damaged or hostile frame cannot balloon). */
export function decompressFrame(buf: Buffer, max: number): Promise<Buffer> {
  const decompress = z.zstdDecompress;
  if (!decompress) return Promise.reject(new Error('this Node has no zstd in zlib'));
  const opts = { maxOutputLength: Math.max(1, max), chunkSize: Math.max(1024, max) };
  return new Promise((resolve, reject) =>
    decompress(buf, opts, (err, out) => (err ? reject(err) : resolve(out))),
  );
}

/**
 * One zstd stream for a whole pack (on libuv's threads), ended as a frame after each piece (flush with
 * ZSTD_e_end: the next input starts a new, independent frame). One stream, not a compression call a frame:
 * each call set up a new context, 2.7x the CPU at 256 KiB frames; and a frame's input as one write, not tar's
 * 64 KiB reads one by one, 1.3x (docs/design.md). The output goes to `out` as zstd puts it out.
 */
class FrameEncoder {
  private readonly zs: ZstdStream;
  private readonly lengths: number[] = [];
  /** Bytes out since the current frame began. */
  private since = 0;

  constructor(
    level: number,
    readonly frameBytes: number,
    private readonly out: (d: Buffer) => void,
    onError: (err: Error) => void,
  ) {
    if (!z.createZstdCompress) throw new Error('this Node has no zstd in zlib');
    this.zs = z.createZstdCompress({
      chunkSize: 256 * 1024,
      params: {
        [z.constants.ZSTD_c_compressionLevel ?? 100]: level,
        [z.constants.ZSTD_c_checksumFlag ?? 201]: 1,
        // No match reaches past its frame: a window of the frame's size, not level 3's 2 MiB (less memory).
        [z.constants.ZSTD_c_windowLog ?? 101]: Math.max(10, Math.ceil(Math.log2(frameBytes))),
      },
    });
    this.zs.on('readable', () => this.drain());
    this.zs.on('error', onError);
  }

  table(): FrameTable {
    return { frameBytes: this.frameBytes, lengths: Uint32Array.from(this.lengths) };
  }

  /** One whole frame; `piece` is free again once this resolves (zstd has read it and put the frame out). */
  async frame(piece: Buffer): Promise<void> {
    this.zs.write(piece);
    // The flush's callback comes after zlib pushed the whole frame's output.
    await new Promise<void>((resolve) => this.zs.flush(z.constants.ZSTD_e_end ?? 2, () => resolve()));
    this.endFrame();
  }

  /** The last frame, ending the stream (ending it after a flushed frame would add an empty frame). */
  async last(piece: Buffer): Promise<void> {
    const ended = once(this.zs, 'end');
    this.zs.end(piece);
    await ended;
    this.endFrame();
  }

  destroy(): void {
    this.zs.destroy();
  }

  private endFrame(): void {
    this.drain();
    if (this.since === 0) throw new Error('zstd put out no frame');
    this.lengths.push(this.since);
    this.since = 0;
  }

  private drain(): void {
    for (let d: Buffer | null = this.zs.read(); d !== null; d = this.zs.read()) {
      this.since += d.length;
      this.out(d);
    }
  }
}

/** Tar bytes in, frames out (FrameEncoder); `table()` after the end gives each frame's length. */
export class FrameCompressor extends Transform {
  private readonly enc: FrameEncoder;
  /** The frame being gathered: one buffer, reused (a new one a frame was ~1 GB of garbage a GB of tar). */
  private readonly frame: Buffer;
  private filled = 0;

  constructor(level: number, frameBytes = FRAME_BYTES) {
    super();
    this.enc = new FrameEncoder(
      level,
      frameBytes,
      (d) => this.push(d),
      (err) => this.destroy(err),
    );
    this.frame = Buffer.allocUnsafe(frameBytes);
  }

  table(): FrameTable {
    return this.enc.table();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.gather(chunk).then(() => cb(), cb);
  }

  override _flush(cb: TransformCallback): void {
    this.enc.last(this.frame.subarray(0, this.filled)).then(() => cb(), cb);
  }

  override _destroy(err: Error | null, cb: (err: Error | null) => void): void {
    this.enc.destroy();
    cb(err);
  }

  /** The chunk into the frame buffer; a full frame goes out only once more bytes come (the last ends the stream). */
  private async gather(chunk: Buffer): Promise<void> {
    for (let at = 0; at < chunk.length; ) {
      if (this.filled === this.frame.length) {
        await this.enc.frame(this.frame);
        this.filled = 0;
      }
      const n = chunk.copy(this.frame, this.filled, at);
      this.filled += n;
      at += n;
    }
  }
}

/**
 * A file of tar (GNU tar wrote it) as frames, read a frame at a time into two reused buffers: no buffer a
 * 64 KiB read and no copy, which is what relaying tar's pipe cost in garbage (docs/design.md). The next frame
 * is read while zstd compresses this one; the file's size says which frame is the last.
 */
export class FileFrames extends Readable {
  private readonly enc: FrameEncoder;
  private readonly bufs: [Buffer, Buffer];
  private busy = false;
  private wanted = false;
  private ended = false;
  /** Frames in the file (known after the first read) and the next one to compress. */
  private count = -1;
  private size = 0;
  private k = 0;
  /** The read of frame k into bufs[k % 2]. */
  private pending: Promise<number> = Promise.resolve(0);

  constructor(
    private readonly file: FileHandle,
    level: number,
    private readonly frameBytes = FRAME_BYTES,
  ) {
    super({ highWaterMark: 1024 * 1024 });
    this.enc = new FrameEncoder(
      level,
      frameBytes,
      (d) => this.push(d),
      (err) => this.destroy(err),
    );
    this.bufs = [Buffer.allocUnsafe(frameBytes), Buffer.allocUnsafe(frameBytes)];
  }

  table(): FrameTable {
    return this.enc.table();
  }

  /**
   * A frame at a time while the reader wants more: a call that comes while a frame is being made (push() asks
   * again from inside it) is remembered, not dropped, or the stream would stall.
   */
  override _read(): void {
    this.wanted = true;
    if (this.busy) return;
    this.busy = true;
    (async () => {
      while (this.wanted && !this.ended) {
        this.wanted = false;
        await this.step();
      }
    })().then(
      () => {
        this.busy = false;
        if (this.wanted && !this.ended) this._read();
      },
      (err: Error) => this.destroy(err),
    );
  }

  override _destroy(err: Error | null, cb: (err: Error | null) => void): void {
    this.enc.destroy();
    cb(err);
  }

  private async step(): Promise<void> {
    if (this.count < 0) {
      this.size = (await this.file.stat()).size;
      this.count = Math.max(1, Math.ceil(this.size / this.frameBytes));
      this.pending = this.readFrame(0);
    }
    const k = this.k;
    const held = await this.pending;
    const want = Math.min(this.frameBytes, this.size - k * this.frameBytes);
    if (held !== want)
      throw new Error(`the tar file changed while read: frame ${k} has ${held} bytes, not ${want}`);
    const cur = this.bufs[k % 2] as Buffer;
    if (k === this.count - 1) {
      await this.enc.last(cur.subarray(0, held));
      this.ended = true;
      this.push(null);
      return;
    }
    this.pending = this.readFrame(k + 1);
    this.pending.catch(() => undefined); // awaited at the next step
    await this.enc.frame(cur.subarray(0, held));
    this.k = k + 1;
  }

  /** Frame k's bytes into bufs[k % 2]. */
  private async readFrame(k: number): Promise<number> {
    const buf = this.bufs[k % 2] as Buffer;
    let n = 0;
    while (n < buf.length) {
      const { bytesRead } = await this.file.read(buf, n, buf.length - n, k * this.frameBytes + n);
      if (bytesRead === 0) break;
      n += bytesRead;
    }
    return n;
  }
}

/** Frames `first`..`last` of a pack, and the compressed bytes [start, end) they occupy. */
export interface FrameRun {
  first: number;
  last: number;
  start: number;
  end: number;
}

/** Each frame's compressed start (and, at [count], the total). */
export function frameStarts(t: FrameTable): Float64Array {
  const starts = new Float64Array(t.lengths.length + 1);
  for (let k = 0; k < t.lengths.length; k++) starts[k + 1] = (starts[k] as number) + (t.lengths[k] as number);
  return starts;
}

/**
 * The frames that hold the tar bytes [offset, offset + size) of some blobs, as runs of consecutive frames to
 * read: two runs at most `gap` compressed bytes apart are read as one (a request costs more than that much
 * transfer). `blobs` in any order; empty blobs need no frame.
 */
export function planRuns(
  t: FrameTable,
  blobs: Iterable<{ offset: number; size: number }>,
  gap: number,
): FrameRun[] {
  const count = t.lengths.length;
  const need = new Uint8Array(count);
  for (const b of blobs) {
    if (b.size === 0) continue;
    const first = Math.floor(b.offset / t.frameBytes);
    const last = Math.floor((b.offset + b.size - 1) / t.frameBytes);
    if (last >= count)
      throw new RangeError(`bytes ${b.offset}+${b.size} lie past the pack's ${count} frames`);
    need.fill(1, first, last + 1);
  }
  const starts = frameStarts(t);
  const runs: FrameRun[] = [];
  for (let k = 0; k < count; k++) {
    if (!need[k]) continue;
    const prev = runs[runs.length - 1];
    if (prev && (starts[k] as number) - prev.end <= gap) {
      prev.last = k;
      prev.end = starts[k + 1] as number;
    } else runs.push({ first: k, last: k, start: starts[k] as number, end: starts[k + 1] as number });
  }
  return runs;
}

/**
 * Whether packs written with `enc` are framed: asked for, zstd, on a Node that can. age encrypts the frames
 * as they are (the lengths are of the compressed bytes), and a reader opens only the age chunks it needs.
 */
export function framesFor(enc: { codec: { name: string }; frames?: boolean }): boolean {
  return !!enc.frames && enc.codec.name === 'zstd' && canFrame();
}

import { once } from 'node:events';
import { type Duplex, Transform, type TransformCallback } from 'node:stream';
import zlib from 'node:zlib';

/**
 * Packs as independent zstd frames (docs/format.md, "Frames"): the pack's tar is cut every FRAME_BYTES and each
 * piece compressed on its own, so a restore that needs a few blobs reads and decompresses only the frames they
 * lie in (by range from S3), not the whole pack. The stored bytes are still one valid zstd stream: `zstd -d`
 * reads the frames one after another, so whole-pack readers and a by-hand restore see no difference.
 *
 * 1 MiB: on the bench's 1 GB dataroot, frames of 256 KiB stored 8% more than one frame a pack and took 1.3x the
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

function call(fn: ZstdCall | undefined, buf: Buffer, opts: object): Promise<Buffer> {
  if (!fn) return Promise.reject(new Error('this Node has no zstd in zlib'));
  return new Promise((resolve, reject) => fn(buf, opts, (err, out) => (err ? reject(err) : resolve(out))));
}

/** One frame back; more than `max` bytes out is an error (a damaged or hostile frame cannot balloon). */
export function decompressFrame(buf: Buffer, max: number): Promise<Buffer> {
  return call(z.zstdDecompress, buf, { maxOutputLength: Math.max(1, max), chunkSize: Math.max(1024, max) });
}

/**
 * Tar bytes in, frames out: one zstd stream for the whole pack (on libuv's threads), ended as a frame every
 * `frameBytes` of input (flush with ZSTD_e_end: the next input starts a new, independent frame). One stream,
 * not a compression call a frame: each call set up a new context, 2.7x the CPU at 256 KiB frames; and a
 * frame's input as one write, not tar's 64 KiB reads one by one, 1.3x (docs/design.md). `table()` after the end
 * gives each frame's length.
 */
export class FrameCompressor extends Transform {
  private readonly zs: ZstdStream;
  /** The frame being gathered: one buffer, reused (a new one a frame was ~1 GB of garbage a GB of tar). */
  private readonly frame: Buffer;
  private filled = 0;
  private readonly lengths: number[] = [];
  /** Bytes out since the current frame began. */
  private since = 0;

  constructor(
    level: number,
    private readonly frameBytes = FRAME_BYTES,
  ) {
    super();
    if (!z.createZstdCompress) throw new Error('this Node has no zstd in zlib');
    this.frame = Buffer.allocUnsafe(frameBytes);
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
    this.zs.on('error', (err: Error) => this.destroy(err));
  }

  table(): FrameTable {
    return { frameBytes: this.frameBytes, lengths: Uint32Array.from(this.lengths) };
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.gather(chunk).then(() => cb(), cb);
  }

  override _flush(cb: TransformCallback): void {
    (async () => {
      // The last frame ends with the stream (ending it after a flushed frame would add an empty frame).
      const ended = once(this.zs, 'end');
      this.zs.end(this.frame.subarray(0, this.filled));
      await ended;
      this.endFrame();
    })().then(() => cb(), cb);
  }

  /**
   * The chunk into the frame buffer; a full frame goes to zstd only once more bytes come, so that the last
   * one always ends with the stream.
   */
  private async gather(chunk: Buffer): Promise<void> {
    for (let at = 0; at < chunk.length; ) {
      if (this.filled === this.frameBytes) {
        this.zs.write(this.frame);
        // Its callback comes once zstd has read the frame and put it all out (zlib pushes the output first):
        // the buffer is free again.
        await new Promise<void>((resolve) => this.zs.flush(z.constants.ZSTD_e_end ?? 2, () => resolve()));
        this.endFrame();
        this.filled = 0;
      }
      const n = chunk.copy(this.frame, this.filled, at);
      this.filled += n;
      at += n;
    }
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
      this.push(d);
    }
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

/** The compressor for a pack written with `enc`, when its packs are framed: plain zstd on a Node that can. */
export function frameCompressor(enc: {
  codec: { name: string };
  level?: number;
  encrypt?: unknown;
  frames?: boolean;
}) {
  return enc.frames && !enc.encrypt && enc.codec.name === 'zstd' && canFrame()
    ? new FrameCompressor(enc.level ?? 3)
    : null;
}

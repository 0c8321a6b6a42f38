import { Transform, type TransformCallback } from 'node:stream';
import zlib from 'node:zlib';

/**
 * Packs as independent zstd frames (docs/format.md, "Frames"): the pack's tar is cut every FRAME_BYTES and each
 * piece compressed on its own, so a restore that needs a few blobs reads and decompresses only the frames they
 * lie in (by range from S3), not the whole pack. The stored bytes are still one valid zstd stream: `zstd -d`
 * reads the frames one after another, so whole-pack readers and a by-hand restore see no difference.
 *
 * 256 KiB: on a 64 MiB tar of binaries and text, level 3, frames of 128 / 256 / 512 KiB / 1 MiB / 4 MiB stored
 * 2.1 / 1.5 / 1.1 / 0.8 / 0.2% more than one frame, at the same CPU from 256 KiB up (docs/design.md).
 */
export const FRAME_BYTES = 256 * 1024;

/** Where a framed pack's frames are: each frame holds `frameBytes` of tar (the last one the rest). */
export interface FrameTable {
  frameBytes: number;
  /** Compressed length of each frame, in order. */
  lengths: Uint32Array;
}

/** Node >= 22.15 has zstd in zlib; typed loosely because @types/node 20 does not know it. */
type ZstdCall = (buf: Buffer, opts: object, cb: (err: Error | null, out: Buffer) => void) => void;
const z = zlib as unknown as {
  zstdCompress?: ZstdCall;
  zstdDecompress?: ZstdCall;
  constants: Record<string, number | undefined>;
};

/** Whether this Node can write and read frames (zstd in zlib). Without it packs are one frame, as before. */
export function canFrame(): boolean {
  return typeof z.zstdCompress === 'function' && typeof z.zstdDecompress === 'function';
}

function call(fn: ZstdCall | undefined, buf: Buffer, opts: object): Promise<Buffer> {
  if (!fn) return Promise.reject(new Error('this Node has no zstd in zlib'));
  return new Promise((resolve, reject) => fn(buf, opts, (err, out) => (err ? reject(err) : resolve(out))));
}

/** One frame: the content size in its header and a content checksum, as the zstd CLI writes them. */
export function compressFrame(buf: Buffer, level: number): Promise<Buffer> {
  return call(z.zstdCompress, buf, {
    // One output chunk for the whole frame (the default 16 KiB chunks cost ~40% more CPU, measured).
    chunkSize: buf.length + (buf.length >> 7) + 4096,
    pledgedSrcSize: buf.length,
    params: {
      [z.constants.ZSTD_c_compressionLevel ?? 100]: level,
      [z.constants.ZSTD_c_checksumFlag ?? 201]: 1,
    },
  });
}

/** One frame back; more than `max` bytes out is an error (a damaged or hostile frame cannot balloon). */
export function decompressFrame(buf: Buffer, max: number): Promise<Buffer> {
  return call(z.zstdDecompress, buf, { maxOutputLength: Math.max(1, max), chunkSize: Math.max(1024, max) });
}

/** Frames compressed at once: the two cores, with one more queued so neither waits for the relay. */
const IN_FLIGHT = 3;

/**
 * Tar bytes in, frames out: every FRAME_BYTES of input compressed as a frame of its own on libuv's threads,
 * in order. `table()` after the end gives each frame's length.
 */
export class FrameCompressor extends Transform {
  private parts: Buffer[] = [];
  private held = 0;
  private readonly lengths: number[] = [];
  private readonly inflight: Promise<Buffer>[] = [];

  constructor(
    private readonly level: number,
    private readonly frameBytes = FRAME_BYTES,
  ) {
    super();
  }

  table(): FrameTable {
    return { frameBytes: this.frameBytes, lengths: Uint32Array.from(this.lengths) };
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.parts.push(chunk);
    this.held += chunk.length;
    this.cutFull().then(() => cb(), cb);
  }

  override _flush(cb: TransformCallback): void {
    (async () => {
      await this.cutFull();
      if (this.held > 0) this.start(this.cutPiece(this.held));
      while (this.inflight.length > 0) await this.emitOldest();
    })().then(() => cb(), cb);
  }

  private async cutFull(): Promise<void> {
    while (this.held >= this.frameBytes) {
      this.start(this.cutPiece(this.frameBytes));
      while (this.inflight.length >= IN_FLIGHT) await this.emitOldest();
    }
  }

  private start(piece: Buffer): void {
    const p = compressFrame(piece, this.level);
    p.catch(() => undefined); // awaited in order by emitOldest
    this.inflight.push(p);
  }

  private async emitOldest(): Promise<void> {
    const frame = await (this.inflight.shift() as Promise<Buffer>);
    this.lengths.push(frame.length);
    this.push(frame);
  }

  /** The first `n` bytes held, as one buffer (a copy only when they span chunks). */
  private cutPiece(n: number): Buffer {
    const all = this.parts.length === 1 ? (this.parts[0] as Buffer) : Buffer.concat(this.parts, this.held);
    const piece = all.subarray(0, n);
    const rest = all.subarray(n);
    this.parts = rest.length > 0 ? [rest] : [];
    this.held = rest.length;
    return piece;
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
export function frameCompressor(enc: { codec: { name: string }; level?: number; encrypt?: unknown }) {
  return !enc.encrypt && enc.codec.name === 'zstd' && canFrame() ? new FrameCompressor(enc.level ?? 3) : null;
}

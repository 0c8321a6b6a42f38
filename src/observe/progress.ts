import { Transform, type TransformCallback } from 'node:stream';
import { TarFileCounter } from './tar-count.js';
import { humanOutput, type StatusLine, stderrStatus } from './terminal.js';

/** What a volume is expected to hold: exact (a manifest's raw size), estimated (a size scan), or unknown. */
export interface VolumeTotal {
  bytes?: number;
  files?: number;
  estimated: boolean;
}

const REDRAW_MS = 250;

/** The progress line's label for a database dump: its raw bytes are SQL, whatever the archive's codec. */
export function dumpLabel(service: string): string {
  return `${service}.sql`;
}

/** The progress line's label for an archive's download into the spool (remote targets): its stored bytes. */
export function downloadLabel(item: string): string {
  return `${item} download`;
}

/** The progress line's label for a volume's blobs (the incremental store's part of it). */
export function blobsLabel(volume: string): string {
  return `${volume} blobs`;
}

/**
 * Restore and the drill know each volume's raw size exactly: the manifest recorded it. With `blobs`, an
 * incremental volume's blobs are an item of their own (the snapshot's blob list gives their count and bytes).
 */
export function manifestTotals(
  volumes: { name: string; rawBytes: number; blobs?: { count: number; bytes: number } }[],
  opts: { blobs?: boolean } = {},
): Record<string, VolumeTotal> {
  const out: Record<string, VolumeTotal> = {};
  for (const v of volumes) {
    out[v.name] = { bytes: v.rawBytes, estimated: false };
    if (opts.blobs && v.blobs)
      out[blobsLabel(v.name)] = { bytes: v.blobs.bytes, files: v.blobs.count, estimated: false };
  }
  return out;
}

/**
 * The progress of one phase of a run over several items (volumes, a dump, a volume's blobs), drawn on one
 * terminal line that updates in place: the current item's and the whole phase's percent, bytes done of
 * total, files, speed and ETA (the phase's part is left out when it has a single item: it would repeat the
 * item's). Each finished item leaves its last line (at 100%) on screen. Off when stderr is not a terminal,
 * so logs stay clean JSON lines in containers and CI.
 */
export class ProgressBoard {
  private readonly done = new Map<string, number>();
  private readonly totals: Record<string, VolumeTotal>;
  private readonly t0: number;

  constructor(
    totals: Record<string, VolumeTotal>,
    private readonly status: StatusLine = stderrStatus(),
    private readonly now: () => number = Date.now,
  ) {
    this.totals = { ...totals };
    this.t0 = now();
  }

  static enabled(): boolean {
    return humanOutput() && process.env.NO_PROGRESS === undefined;
  }

  /** The pass-through for one volume's raw tar bytes (its regular files are counted from the headers). */
  volume(name: string): Progress {
    return new Progress(name, this, true);
  }

  /**
   * An item that is not a tar (a database dump: bytes only), or whose progress is reported (advance,
   * finish): the blobs a phase of the store places or stores.
   */
  item(name: string): Progress {
    return new Progress(name, this, false);
  }

  /** An item's expected size; unknown until a count finishes (backup/blob-progress.ts counts alongside). */
  totalOf(name: string): VolumeTotal {
    return this.totals[name] ?? { estimated: true };
  }

  /** A total learnt while the phase runs: the next line of that item uses it. */
  setTotal(name: string, total: VolumeTotal): void {
    this.totals[name] = total;
  }

  /** An item whose work was not needed (an unchanged volume's archive reused): done, without a line. */
  settle(name: string, bytes: number): void {
    this.done.set(name, bytes);
  }

  /** Called by an item's Progress; `final` keeps the line and settles the item's total to what it was. */
  draw(p: Progress, final: boolean): void {
    if (final) this.done.set(p.name, p.bytes);
    const item = p.describe(this.now(), final);
    const line = Object.keys(this.totals).length > 1 ? `${item} │ all ${this.overall(p, final)}` : item;
    if (final) this.status.keep(line);
    else this.status.show(line);
  }

  private overall(current: Progress, final: boolean): string {
    let bytes = 0;
    let total = 0;
    let estimated = false;
    for (const [name, t] of Object.entries(this.totals)) {
      const finished = this.done.get(name);
      const now = name === current.name && !final ? current.bytes : (finished ?? 0);
      bytes += now;
      if (finished !== undefined) total += finished;
      else {
        total += Math.max(t.bytes ?? now, now);
        estimated ||= t.estimated || t.bytes === undefined;
      }
    }
    const secs = Math.max((this.now() - this.t0) / 1000, 0.001);
    return figures(bytes, total, estimated, bytes / secs, false);
  }
}

/** One item's bytes: a pass-through, or fed by reportTotal or advance where Node never sees the bytes. */
export class Progress extends Transform {
  bytes = 0;
  private readonly counter: TarFileCounter | undefined;
  /** Files counted by reportFile, when the tar stream bypasses Node. */
  private reported: number | undefined;
  /** When the first byte came: an item made ahead of its work (a volume's blobs) times only the work. */
  private t0: number | undefined;
  private last = 0;

  constructor(
    readonly name: string,
    private readonly board: ProgressBoard,
    tar: boolean,
  ) {
    super();
    this.counter = tar ? new TarFileCounter() : undefined;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    this.counter?.push(chunk);
    this.tick();
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    this.board.draw(this, true);
    cb();
  }

  /** For bytes Node never sees (GNU tar piping into zstd directly): the running total, from elsewhere. */
  reportTotal(bytes: number): void {
    this.bytes = bytes;
    this.tick();
  }

  /** For files Node never sees: one more regular file archived (tar's listing); replaces the stream count. */
  reportFile(): void {
    this.reported = (this.reported ?? 0) + 1;
  }

  /** For work counted by its caller: `bytes` more done, in `files` more files. */
  advance(bytes: number, files = 1): void {
    this.bytes += bytes;
    this.reported = (this.reported ?? 0) + files;
    this.tick();
  }

  /** The last line of a progress fed by reportTotal. */
  finishLine(bytes: number): void {
    this.bytes = bytes;
    this.board.draw(this, true);
  }

  /** The last line of a progress fed by advance. */
  finish(): void {
    this.board.draw(this, true);
  }

  describe(now: number, final: boolean): string {
    const secs = (now - (this.t0 ?? now)) / 1000;
    const expected = this.board.totalOf(this.name);
    // No total at all (a count not in yet, a scan that failed): bytes, files and speed only, no made-up percent.
    let total: number | undefined = this.bytes;
    if (!final) total = expected.bytes === undefined ? undefined : Math.max(expected.bytes, this.bytes);
    // An exact total that the work has passed (a count that missed some) is an estimate from then on.
    const estimated = !final && (expected.estimated || this.bytes > (expected.bytes ?? 0));
    // No speed from a first chunk alone (it would be a guess); a finished item's is what it took.
    const speed = final || secs >= 0.1;
    const rate = this.bytes / Math.max(secs, 0.001);
    return `${this.name} ${figures(this.bytes, total, estimated, speed ? rate : 0, speed, this.filesText(final))}`;
  }

  private filesText(final: boolean): string {
    if (this.reported !== undefined) return `${this.reported}${this.filesOf(final)} files`;
    const c = this.counter;
    if (!c?.ok || (c.files === 0 && this.bytes > 0)) return '';
    return `${c.files}${this.filesOf(final)} files`;
  }

  /** "/~1234" of a size scan's count, "/1234" of a blob list's. */
  private filesOf(final: boolean): string {
    const expected = this.board.totalOf(this.name);
    const files = this.reported ?? this.counter?.files ?? 0;
    if (final || !expected.files || files > expected.files) return '';
    return `/${expected.estimated ? '~' : ''}${expected.files}`;
  }

  private tick(): void {
    const now = Date.now();
    this.t0 ??= now;
    if (now - this.last < REDRAW_MS) return;
    this.last = now;
    this.board.draw(this, false);
  }
}

/**
 * The share of the total done before an ETA is shown. Below it the rate is mostly start-up (a restore's
 * first tiny volume said "ETA 7m11s" for a run that took 2 s): no forecast beats a wrong one.
 */
const ETA_AFTER = 0.02;

/**
 * "~62% 650M/~1.0G 1234 files 361M/s ETA ~2s", short enough that a volume and the whole run share an
 * 80-column line; a percent stays below 100 until the end is seen.
 */
function figures(
  done: number,
  total: number | undefined,
  estimated: boolean,
  rate: number,
  speed: boolean,
  files = '',
): string {
  const tilde = estimated ? '~' : '';
  const parts: string[] = [];
  if (total === undefined) parts.push(short(done));
  else {
    const pct = total > 0 ? Math.floor((done / total) * 100) : 100;
    const shown = estimated || done < total ? Math.min(pct, 99) : pct;
    parts.push(`${tilde}${shown}%`, `${short(done)}/${tilde}${short(total)}`);
  }
  if (files) parts.push(files);
  if (speed) parts.push(`${short(rate)}/s`);
  if (total !== undefined && done < total && rate > 0 && done >= total * ETA_AFTER)
    parts.push(`ETA ${tilde}${seconds((total - done) / rate)}`);
  return parts.join(' ');
}

/** 1024-based, one letter: 512B, 12K, 650M, 1.0G. */
function short(n: number): string {
  const units = ['B', 'K', 'M', 'G', 'T'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v < 10 && u > 0 ? v.toFixed(1) : Math.round(v)}${units[u]}`;
}

function seconds(s: number): string {
  if (s < 60) return `${Math.ceil(s)}s`;
  const m = Math.floor(s / 60);
  return m < 60
    ? `${m}m${String(Math.ceil(s % 60)).padStart(2, '0')}s`
    : `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

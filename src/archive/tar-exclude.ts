import { Transform, type TransformCallback } from 'node:stream';
import { type ExcludeRule, excludeMatcher } from '../config/exclude-rules.js';

export interface ExcludeStats {
  /** Tar entries dropped. */
  entries: number;
  /** File bytes dropped (tar bodies, without headers). */
  bytes: number;
}

const BLOCK = 512;

/** One entry's header as written (type is the tar type flag), for TarExclude's `inspect`. */
export interface RawEntry {
  type: string;
  name: string;
  linkname: string;
  size: number;
  mode: number;
  uid: number;
  gid: number;
  /** Seconds. */
  mtime: number;
  /** PAX records that apply to this entry. */
  pax: Record<string, string>;
}

function normalise(name: string): string {
  return name
    .replace(/^(\.\/)+/, '')
    .replace(/^\.$/, '')
    .replace(/\/+$/, '');
}

/** Reads a NUL/space-terminated field. */
function field(buf: Buffer, start: number, len: number): string {
  const raw = buf.subarray(start, start + len);
  const nul = raw.indexOf(0);
  return raw.subarray(0, nul === -1 ? raw.length : nul).toString('utf8');
}

/** Numeric header field: octal text, or base-256 when the high bit of the first byte is set. */
function numeric(buf: Buffer, start: number, len: number): number {
  if ((buf[start] ?? 0) & 0x80) {
    let n = (buf[start] ?? 0) & 0x7f;
    for (let i = start + 1; i < start + len; i++) n = n * 256 + (buf[i] ?? 0);
    return n;
  }
  const text = field(buf, start, len).trim();
  return text ? Number.parseInt(text, 8) : 0;
}

/** PAX records "<len> key=value\n". */
function paxRecords(data: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  while (i < data.length) {
    const sp = data.indexOf(0x20, i);
    if (sp === -1) break;
    const len = Number.parseInt(data.subarray(i, sp).toString('ascii'), 10);
    if (!Number.isFinite(len) || len <= 0) break;
    const rec = data.subarray(sp + 1, i + len - 1).toString('utf8');
    const eq = rec.indexOf('=');
    if (eq > 0) out[rec.slice(0, eq)] = rec.slice(eq + 1);
    i += len;
  }
  return out;
}

const padded = (n: number) => Math.ceil(n / BLOCK) * BLOCK;

/**
 * A byte-level tar filter: drops the entries that match the rules (with their PAX / GNU long-name headers
 * and bodies) and passes every other byte through untouched, so owners, modes, times, links and PAX records
 * of kept entries stay exactly as the producer wrote them. Hard links whose target was dropped are dropped
 * too (their data went with the target). Works on any POSIX/GNU tar stream, whoever produces it.
 */
export class TarExclude extends Transform {
  readonly stats: ExcludeStats = { entries: 0, bytes: 0 };
  private readonly excluded: (path: string) => boolean;
  private readonly droppedFiles = new Set<string>();
  private buf: Buffer = Buffer.alloc(0);
  /** PAX 'x' / GNU 'L'/'K' headers (with bodies) waiting for the entry they describe. */
  private meta: Buffer[] = [];
  private pax: Record<string, string> = {};
  private longName: string | undefined;
  private longLink: string | undefined;
  /** Body bytes of the current entry still to pass (>0) or to drop (<0 as count via dropping flag). */
  private remaining = 0;
  private dropping = false;
  private ended = false;

  /**
   * `inspect` sees every entry (and every global PAX header) before any of its bytes are passed on, so a
   * check that throws stops the stream ahead of whatever consumes it (archive/tar-guard-stream.ts).
   */
  constructor(
    rules: ExcludeRule[],
    private readonly inspect?: (e: RawEntry) => void,
  ) {
    super();
    this.excluded = excludeMatcher(rules);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      this.consume(chunk);
      cb();
    } catch (err) {
      cb(err as Error);
    }
  }

  override _flush(cb: TransformCallback): void {
    // A truncated stream stays truncated: pass what is left so the consumer sees the same damage.
    if (this.buf.length > 0) this.push(this.buf);
    for (const m of this.meta) this.push(m);
    cb();
  }

  private consume(chunk: Buffer): void {
    let data = this.buf.length > 0 ? Buffer.concat([this.buf, chunk]) : chunk;
    this.buf = Buffer.alloc(0);
    while (data.length > 0) {
      if (this.ended) {
        this.push(data);
        return;
      }
      if (this.remaining > 0) {
        const n = Math.min(this.remaining, data.length);
        if (!this.dropping) this.push(data.subarray(0, n));
        this.remaining -= n;
        data = data.subarray(n);
        continue;
      }
      if (data.length < BLOCK) {
        this.buf = Buffer.from(data);
        return;
      }
      const header = data.subarray(0, BLOCK);
      if (header.every((b) => b === 0)) {
        // End-of-archive marker: everything from here on is trailer.
        this.ended = true;
        continue;
      }
      const type = String.fromCharCode(header[156] ?? 0);
      const size = numeric(header, 124, 12);
      if (type === 'x' || type === 'L' || type === 'K') {
        const total = BLOCK + padded(size);
        if (data.length < total) {
          this.buf = Buffer.from(data);
          return;
        }
        const body = data.subarray(BLOCK, BLOCK + size);
        if (type === 'x') Object.assign(this.pax, paxRecords(body));
        else if (type === 'L') this.longName = field(body, 0, body.length);
        else this.longLink = field(body, 0, body.length);
        this.meta.push(Buffer.from(data.subarray(0, total)));
        data = data.subarray(total);
        continue;
      }
      if (type === 'g') {
        // Global PAX header: applies to the whole archive, always kept.
        const total = BLOCK + padded(size);
        if (data.length < total) {
          this.buf = Buffer.from(data);
          return;
        }
        this.inspect?.({ type, name: '', linkname: '', size, mode: 0, uid: 0, gid: 0, mtime: 0, pax: {} });
        this.push(data.subarray(0, total));
        data = data.subarray(total);
        continue;
      }
      this.entry(header, type, size);
      data = data.subarray(BLOCK);
    }
  }

  private entry(header: Buffer, type: string, headerSize: number): void {
    const magic = field(header, 257, 6);
    const prefix = magic === 'ustar' ? field(header, 345, 155) : '';
    const short = field(header, 0, 100);
    const name = this.pax.path ?? this.longName ?? (prefix ? `${prefix}/${short}` : short);
    const link = this.pax.linkpath ?? this.longLink ?? field(header, 157, 100);
    const size = this.pax.size !== undefined ? Number(this.pax.size) : headerSize;
    const path = normalise(name);
    this.inspect?.({
      type,
      name,
      linkname: link,
      size,
      mode: numeric(header, 100, 8),
      uid: this.pax.uid !== undefined ? Number(this.pax.uid) : numeric(header, 108, 8),
      gid: this.pax.gid !== undefined ? Number(this.pax.gid) : numeric(header, 116, 8),
      mtime: this.pax.mtime !== undefined ? Number(this.pax.mtime) : numeric(header, 136, 12),
      pax: this.pax,
    });
    // Hard links, symlinks and directories have no body; '1' with a size is not produced by Docker or GNU tar.
    const body = type === '1' || type === '2' || type === '5' ? 0 : size;
    const drop = this.excluded(path) || (type === '1' && this.droppedFiles.has(normalise(link)));
    if (drop) {
      this.stats.entries++;
      this.stats.bytes += body;
      if (type === '0' || type === '\0' || type === '7') this.droppedFiles.add(path);
    } else {
      for (const m of this.meta) this.push(m);
      this.push(Buffer.from(header));
    }
    this.meta = [];
    this.pax = {};
    this.longName = undefined;
    this.longLink = undefined;
    this.dropping = drop;
    this.remaining = padded(body);
  }
}

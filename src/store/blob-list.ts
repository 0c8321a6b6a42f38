import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { getCodec } from '../archive/codec.js';
import { HashTap } from '../archive/tap.js';
import { SidecarError } from '../common/errors.js';
import { joinChunks } from '../common/line-file.js';
import { isUndecodable } from '../common/undecodable.js';
import type { StoreEncoding } from './encoding.js';

/**
 * One blob of a snapshot: the content's SHA-1 (which names it in the store) and where and how it lay in the
 * dataroot. `path` is the file's place (filedir/ab/cd/<name>); only a corrupted file's name differs from sha1.
 */
export interface BlobEntry {
  sha1: string;
  size: number;
  mode: number;
  uid: number;
  gid: number;
  mtimeMs: number;
  path: string;
}

/**
 * A directory of the dataroot's blob areas two levels down (`filedir/ab/cd`), with its owner, mode and time:
 * format 2 lists them, after the blobs, and the tarball leaves them out (a stop window then costs one stat
 * per directory instead of tar's walk of every one; docs/design.md).
 */
export interface DirEntry {
  path: string;
  mode: number;
  uid: number;
  gid: number;
  mtimeMs: number;
}

/**
 * Whether a path fits a list line: a tab or a line break in it (a directory Moodle never makes, but a dataroot
 * may hold) would split it, and the list would not read back; bytes that are not UTF-8 (read as U+FFFD)
 * would name another path. Such a file or directory stays in the tarball, which keeps any name.
 */
export function isListable(path: string): boolean {
  return !path.includes('\t') && !path.includes('\n') && !isUndecodable(path);
}

/** First line of a blob list; the format is text so a by-hand restore needs only zstd/age and a shell. */
export const BLOB_LIST_HEADER = 'mbs-blobs 2';
/** Format 1 (no directory lines) still reads. */
export const BLOB_LIST_HEADERS = ['mbs-blobs 1', BLOB_LIST_HEADER] as const;
/** A directory line's first two fields (where a blob line has its sha1 and size). */
export const DIR_LINE_PREFIX = '-\t-\t';

const attrs = (e: { mode: number; uid: number; gid: number; mtimeMs: number }) =>
  `${(e.mode & 0o7777).toString(8)}\t${e.uid}\t${e.gid}\t${Math.trunc(e.mtimeMs)}`;

export function formatBlobLine(b: BlobEntry): string {
  return `${b.sha1}\t${b.size}\t${attrs(b)}\t${b.path}\n`;
}

export function formatDirLine(d: DirEntry): string {
  return `${DIR_LINE_PREFIX}${attrs(d)}\t${d.path}\n`;
}

/**
 * The offsets of a line's tabs when it has exactly `count` of them, else null. The lines are read by
 * offset, not split into strings and tested with a regex a field: a million-line list a restore, verify
 * or prune reads (200,000 lines: ~140 ms that way, ~85 ms this way).
 */
function tabs(line: string, count: number): number[] | null {
  const at: number[] = [];
  for (let from = 0; ; ) {
    const t = line.indexOf('\t', from);
    if (t < 0) return at.length === count ? at : null;
    if (at.push(t) > count) return null;
    from = t + 1;
  }
}

/**
 * The integer written in line[from, to) in `radix` (8 or 10), or NaN: one digit at least, nothing else but
 * a leading '-' where `signed` (an mtime before 1970: find and stat give them, and the list keeps them).
 */
function integer(line: string, from: number, to: number, radix: number, signed = false): number {
  const minus = signed && line.charCodeAt(from) === 45; /* - */
  let p = minus ? from + 1 : from;
  if (p >= to) return Number.NaN;
  let v = 0;
  for (; p < to; p++) {
    const d = line.charCodeAt(p) - 48;
    if (d < 0 || d >= radix) return Number.NaN;
    v = v * radix + d;
  }
  if (!Number.isSafeInteger(v)) return Number.NaN;
  return minus ? -v : v;
}

/** 40 lower-case hex digits at line[0, 40). */
function sha1At(line: string): boolean {
  for (let i = 0; i < 40; i++) {
    const c = line.charCodeAt(i);
    if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102))) return false;
  }
  return true;
}

/**
 * `filedir/` or `trashdir/` and `levels` more names below it, none empty, `.` or `..`: a list names only
 * places inside a blob area, so a damaged or crafted list cannot make a restore write outside the dataroot.
 */
function inArea(path: string, levels: number): boolean {
  const slash = path.indexOf('/');
  const area = path.slice(0, slash);
  if (area !== 'filedir' && area !== 'trashdir') return false;
  let from = slash + 1;
  for (let level = 1; level <= levels; level++) {
    const end = level === levels ? path.length : path.indexOf('/', from);
    if (end < 0) return false;
    const name = path.slice(from, end);
    if (name === '' || name === '.' || name === '..' || name.includes('/')) return false;
    from = end + 1;
  }
  return true;
}

const malformed = (where: string, what: string, line: string) =>
  new SidecarError('INTEGRITY_FAILED', `${where}: malformed ${what} ${JSON.stringify(line.slice(0, 120))}`);

/** A field that is not a number parses as NaN; one NaN makes the line malformed. */
const anyNaN = (...xs: number[]) => xs.some(Number.isNaN);

export function parseDirLine(line: string, where: string): DirEntry {
  const t = tabs(line, 6);
  if (!t) throw malformed(where, 'directory line', line);
  const [, t1, t2, t3, t4, t5] = t as [number, number, number, number, number, number];
  const mode = integer(line, t1 + 1, t2, 8);
  const uid = integer(line, t2 + 1, t3, 10);
  const gid = integer(line, t3 + 1, t4, 10);
  const mtimeMs = integer(line, t4 + 1, t5, 10, true);
  const path = line.slice(t5 + 1);
  if (anyNaN(mode, uid, gid, mtimeMs) || !inArea(path, 2)) throw malformed(where, 'directory line', line);
  return { path, mode, uid, gid, mtimeMs };
}

export function parseBlobLine(line: string, where: string): BlobEntry {
  const t = tabs(line, 6);
  if (t?.[0] !== 40 || !sha1At(line)) throw malformed(where, 'blob list line', line);
  const [, t1, t2, t3, t4, t5] = t as [number, number, number, number, number, number];
  const size = integer(line, 41, t1, 10);
  const mode = integer(line, t1 + 1, t2, 8);
  const uid = integer(line, t2 + 1, t3, 10);
  const gid = integer(line, t3 + 1, t4, 10);
  const mtimeMs = integer(line, t4 + 1, t5, 10, true);
  const path = line.slice(t5 + 1);
  if (anyNaN(size, mode, uid, gid, mtimeMs) || !inArea(path, 3))
    throw malformed(where, 'blob list line', line);
  return { sha1: line.slice(0, 40), size, mode, uid, gid, mtimeMs, path };
}

export interface BlobListSummary {
  count: number;
  bytes: number;
  storedBytes: number;
  sha256: string;
}

/**
 * Writes a snapshot's blob list to a local file: text lines → codec → [age] → sha256 tap. Lines are batched
 * (a million blobs are ~90 MB of text) and written with back-pressure.
 */
export class BlobListWriter {
  private readonly text = new PassThrough();
  private readonly tap = new HashTap();
  private readonly done: Promise<void>;
  private batch: (string | Buffer)[] = [];
  private count = 0;
  private bytes = 0;

  /** `header`: the first line(s), a delta list's included (store/list-delta.ts); default format 2's. */
  constructor(path: string, enc: StoreEncoding, header = `${BLOB_LIST_HEADER}\n`) {
    const compress = enc.codec.compress(enc.level);
    // A compressor that dies (killed, disk full) ends the pipeline as a bare "Premature close" elsewhere:
    // its own error, which names the tool and its status, is the one to report.
    let toolError: Error | undefined;
    compress.on('error', (err: Error) => {
      toolError ??= err;
    });
    const stages = [
      this.text,
      compress,
      ...(enc.encrypt ? [enc.encrypt()] : []),
      this.tap,
      createWriteStream(path, { mode: 0o600 }),
    ] as const;
    this.done = pipeline(stages as unknown as [Readable, ...Writable[]]).catch((err: Error) => {
      throw toolError ?? err;
    });
    this.done.catch(() => undefined); // surfaced by finish()
    this.batch.push(header);
  }

  /** One line as it is (a delta's), not counted. */
  async addLine(line: string | Buffer): Promise<void> {
    this.batch.push(line);
    if (this.batch.length >= 512) await this.flush();
  }

  async add(b: BlobEntry): Promise<void> {
    this.batch.push(formatBlobLine(b));
    this.count++;
    this.bytes += b.size;
    if (this.batch.length >= 512) await this.flush();
  }

  /** Blob lines already formatted (whole lines, as text or bytes), counted by the caller. */
  async addLines(text: string | Buffer, count: number, bytes: number): Promise<void> {
    this.batch.push(text);
    this.count += count;
    this.bytes += bytes;
    await this.flush();
  }

  /** A directory line: after every blob line, so a by-hand restore sets its time last. */
  async addDir(d: DirEntry): Promise<void> {
    this.batch.push(formatDirLine(d));
    if (this.batch.length >= 512) await this.flush();
  }

  async finish(): Promise<BlobListSummary> {
    await this.flush();
    this.text.end();
    await this.done;
    return { count: this.count, bytes: this.bytes, storedBytes: this.tap.bytes, sha256: this.tap.digest() };
  }

  /** On an error: stop the pipeline (the caller removes the file). */
  abort(): void {
    this.text.destroy();
  }

  private async flush(): Promise<void> {
    if (this.batch.length === 0) return;
    const chunk = joinChunks(this.batch);
    this.batch = [];
    if (!this.text.write(chunk)) await Promise.race([once(this.text, 'drain'), this.done]);
  }
}

/**
 * Reads a stored blob list (its stored bytes from `source`), yielding each entry. The stored bytes' sha256
 * is checked against `sha256` at the end: a caller that acts on the list must read it to the end first.
 */
export interface ListSource {
  sha256: string;
  codec: StoreEncoding['codec']['name'];
  decrypt?: () => NodeJS.ReadWriteStream;
  where: string;
  /** Each directory line (format 2); without it they are checked and skipped. */
  onDir?: (d: DirEntry) => void;
}

/**
 * A stored blob list's text: stored bytes → sha256 tap → [age] → decompress. `feed` settles when all went
 * through (await it after reading `text`); `tap` holds the stored bytes' sha256 then.
 */
export function decodeList(source: Readable, o: ListSource, highWaterMark: number) {
  const tap = new HashTap();
  const text = new PassThrough({ readableHighWaterMark: highWaterMark });
  const feed = pipeline([
    source,
    tap,
    ...(o.decrypt ? [o.decrypt()] : []),
    getCodec(o.codec).decompress(),
    text,
  ]);
  feed.catch(() => undefined); // the reader awaits it
  return { tap, text, feed };
}

export async function* readBlobList(source: Readable, o: ListSource): AsyncGenerator<BlobEntry> {
  const { tap, text, feed } = decodeList(source, o, 1 << 20);
  let rest = '';
  let first = true;
  let dirs = false;
  try {
    for await (const chunk of text) {
      const lines = (rest + (chunk as Buffer).toString('utf8')).split('\n');
      rest = lines.pop() ?? '';
      for (const line of lines) {
        if (first) {
          first = false;
          if (!(BLOB_LIST_HEADERS as readonly string[]).includes(line)) {
            throw new SidecarError(
              'INTEGRITY_FAILED',
              `${o.where}: not a blob list (first line ${JSON.stringify(line.slice(0, 40))})`,
            );
          }
          dirs = line === BLOB_LIST_HEADER;
          continue;
        }
        if (!dirs || !line.startsWith(DIR_LINE_PREFIX)) yield parseBlobLine(line, o.where);
        else {
          const d = parseDirLine(line, o.where);
          o.onDir?.(d);
        }
      }
    }
    await feed;
  } catch (err) {
    throw listReadError(err, o.where);
  } finally {
    // A reader that stops early must not leave the download running.
    if (!text.readableEnded) text.destroy();
  }
  checkListEnd(o, tap, rest !== '' || first);
}

/** A list's read failed: a SidecarError as it is, anything else (the codec's, age's) as INTEGRITY_FAILED. */
export function listReadError(err: unknown, where: string): SidecarError {
  if (err instanceof SidecarError) return err;
  return new SidecarError(
    'INTEGRITY_FAILED',
    `${where}: the blob list does not decode: ${(err as Error).message}`,
    undefined,
    { cause: err },
  );
}

/** Once a list was read to its end: whole, and its stored bytes the ones the manifest names. */
export function checkListEnd(
  o: Pick<ListSource, 'where' | 'sha256'>,
  tap: HashTap,
  truncated: boolean,
): void {
  if (truncated) throw new SidecarError('INTEGRITY_FAILED', `${o.where}: the blob list is truncated`);
  if (tap.digest() !== o.sha256) {
    throw new SidecarError(
      'INTEGRITY_FAILED',
      `${o.where}: the blob list does not match its checksum (sha256 ${tap.digest()})`,
      'the stored file was changed or damaged',
    );
  }
}

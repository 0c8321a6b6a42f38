import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, type Hash } from 'node:crypto';
import type { Writable } from 'node:stream';
import { collect, exited } from '../common/processes.js';
import { BLOCK } from './tar-header.js';

/** One file as GNU tar read it: its data in the pieces it came in, and the SHA-1 of that data. */
export interface FedFile {
  /** The path tar was given (relative to the root). */
  path: string;
  /** tar's type flag: '0' for a regular file; anything else was not one when tar opened it. */
  type: string;
  size: number;
  /** The data, when it was kept (`size` ≤ the keep limit); views into tar's output, not copies. */
  data: Buffer[] | null;
  sha1: string;
}

/** tar's numeric field: octal text, or base-256 (GNU) when the first byte has its top bit set. */
function tarNumber(h: Buffer, off: number, width: number): number {
  if ((h[off] ?? 0) & 0x80) {
    let v = 0;
    for (let i = 1; i < width; i++) v = v * 256 + (h[off + i] ?? 0);
    return v;
  }
  const text = h
    .toString('ascii', off, off + width)
    .replace(/[\0 ]+$/, '')
    .replace(/^ +/, '');
  if (!/^[0-7]*$/.test(text)) throw new Error(`tar output: bad numeric field "${text}"`);
  return text === '' ? 0 : Number.parseInt(text, 8);
}

/**
 * Splits a tar stream into files as chunks arrive: headers may straddle chunks, data is kept as views into
 * them (no copy) and hashed on the way. Only what `tar -c` of plain paths makes is expected: one header
 * block per entry, names within the 100-byte field (a blob path is 54 bytes).
 */
export class TarSplitter {
  private head: Buffer[] = [];
  private headBytes = 0;
  private cur: {
    path: string;
    type: string;
    size: number;
    left: number;
    data: Buffer[] | null;
    hash: Hash;
  } | null = null;
  private pad = 0;
  private ended = false;

  /** Entries larger than `keep` bytes are hashed but not kept in memory. */
  constructor(private readonly keep: number) {}

  /** Feeds one chunk; returns the files it completed. */
  push(chunk: Buffer): FedFile[] {
    const out: FedFile[] = [];
    let at = 0;
    while (at < chunk.length && !this.ended) {
      if (this.pad > 0) {
        const n = Math.min(this.pad, chunk.length - at);
        this.pad -= n;
        at += n;
      } else if (this.cur) {
        const n = Math.min(this.cur.left, chunk.length - at);
        const piece = chunk.subarray(at, at + n);
        this.cur.hash.update(piece);
        this.cur.data?.push(piece);
        this.cur.left -= n;
        at += n;
        if (this.cur.left === 0) this.complete(out);
      } else {
        const n = Math.min(BLOCK - this.headBytes, chunk.length - at);
        this.head.push(chunk.subarray(at, at + n));
        this.headBytes += n;
        at += n;
        if (this.headBytes === BLOCK) this.header(out);
      }
    }
    return out;
  }

  /** Whether the stream ended cleanly (the end-of-archive block was seen, nothing left open). */
  get done(): boolean {
    return this.ended;
  }

  private header(out: FedFile[]): void {
    const h = this.head.length === 1 ? (this.head[0] as Buffer) : Buffer.concat(this.head);
    this.head = [];
    this.headBytes = 0;
    if (h.every((b) => b === 0)) {
      this.ended = true; // tar pads its last record with zeros: the rest is not read
      return;
    }
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : (h[i] ?? 0);
    if (sum !== tarNumber(h, 148, 8)) throw new Error('tar output: header checksum mismatch');
    const path = h.toString('utf8', 0, 100).replace(/\0.*$/s, '');
    const type = String.fromCharCode(h[156] || 0x30);
    const size = type === '0' ? tarNumber(h, 124, 12) : 0;
    this.cur = {
      path,
      type,
      size,
      left: size,
      data: size <= this.keep ? [] : null,
      hash: createHash('sha1'),
    };
    if (size === 0) this.complete(out);
  }

  private complete(out: FedFile[]): void {
    const c = this.cur as NonNullable<TarSplitter['cur']>;
    this.cur = null;
    this.pad = (BLOCK - (c.size % BLOCK)) % BLOCK;
    out.push({ path: c.path, type: c.type, size: c.size, data: c.data, sha1: c.hash.digest('hex') });
  }
}

/**
 * GNU tar reading the files named on its input, in that order, as one stream: the kernel and tar do the
 * opening and reading (a file at a time in Node cost ~1 ms a file, measured: docs/design.md), and Node only
 * splits and hashes. A file that vanished before tar reached it is left out of the stream with a warning
 * (--ignore-failed-read); a symlink is archived as one, never followed.
 */
export class TarFeed {
  readonly child: ChildProcess;
  readonly exit: Promise<number>;
  private readonly stderr: () => string;

  constructor(root: string) {
    this.child = spawn(
      'tar',
      [
        '-c',
        '-f',
        '-',
        '-C',
        root,
        '--no-recursion',
        '--hard-dereference', // a file with two blob paths: each stored whole, never as a link
        '--ignore-failed-read',
        '--null',
        '--verbatim-files-from',
        '-T',
        '-',
      ],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    this.stderr = collect(this.child.stderr as NodeJS.ReadableStream);
    // 1: "file changed as we read it" (the SHA-1 check then tells what was stored).
    this.exit = exited(this.child, 'tar', this.stderr, (code) => code === 0 || code === 1);
    this.exit.catch(() => undefined); // awaited by the reader
    this.child.stdin?.on('error', () => undefined); // tar gone: its exit says why
  }

  /** What tar said on stderr (a file it could not read or that vanished). */
  warnings(): string {
    return this.stderr();
  }

  /** Names one more file; resolves once tar's input took it (back-pressure). */
  async name(path: string): Promise<void> {
    const stdin = this.child.stdin as Writable;
    if (stdin.destroyed || stdin.writableEnded) return; // tar is gone: the reader reports why
    if (stdin.write(`${path}\0`)) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        stdin.off('drain', done);
        stdin.off('close', done);
        resolve();
      };
      stdin.once('drain', done);
      stdin.once('close', done);
    });
  }

  /** No more names. */
  end(): void {
    this.child.stdin?.end();
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

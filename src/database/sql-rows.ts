import { Transform, type TransformCallback } from 'node:stream';

const USE = /^USE `((?:[^`]|``)+)`;/;
const CREATE = /^CREATE TABLE `((?:[^`]|``)+)`/;
/** `VALUES` is followed by the first row on the same line (MariaDB ≤ 10.6) or on the next (10.11+). */
const INSERT = /^INSERT INTO `((?:[^`]|``)+)` VALUES ?$/;
const PREFIXES = ['INSERT INTO `', 'USE `', 'CREATE TABLE `'] as const;
/** Line heads are collected byte by byte (one char per byte); names are UTF-8. */
const utf8 = (s: string) => Buffer.from(s, 'latin1').toString('utf8');
/** Longest line start we need to look at to recognise a statement. */
const HEAD_MAX = 4096;

/**
 * Counts the rows a mariadb-dump stream inserts, per `database.table`, while passing the bytes on unchanged.
 * The dump's INSERTs are extended (`VALUES (…),(…);`) with backslash-escaped strings, so rows are the
 * top-level parentheses of the VALUES list, outside string literals. Tables that are created but get no
 * INSERT count 0. Used at backup time (recorded in the manifest) and on restore (checked against the server).
 */
export class SqlRowCounter extends Transform {
  readonly tables: Record<string, number> = {};
  private database = '';
  private mode: 'head' | 'skip' | 'values' = 'head';
  private head = '';
  private table = '';
  private inString = false;
  private escaped = false;
  private depth = 0;

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.scan(chunk);
    cb(null, chunk);
  }

  private key(table: string): string {
    return `${this.database}.${utf8(table).replace(/``/g, '`')}`;
  }

  /** A complete short line: the current database, or a table that may get no INSERT. */
  private line(text: string): void {
    const use = USE.exec(text);
    if (use) this.database = utf8(use[1] as string).replace(/``/g, '`');
    const create = CREATE.exec(text);
    if (create) this.tables[this.key(create[1] as string)] ??= 0;
  }

  private scan(buf: Buffer): void {
    for (let i = 0; i < buf.length; i++) {
      const c = buf[i] as number;
      if (this.mode === 'skip') {
        // Jump to the next line start without a per-byte loop.
        const nl = buf.indexOf(0x0a, i);
        if (nl === -1) return;
        i = nl;
        this.mode = 'head';
        this.head = '';
        continue;
      }
      if (this.mode === 'head') {
        const nl = c === 0x0a;
        if (!nl) this.head += String.fromCharCode(c);
        if (this.head.startsWith(PREFIXES[0])) {
          const m = nl || this.head.endsWith(' VALUES ') ? INSERT.exec(this.head) : null;
          if (m) {
            this.table = this.key(m[1] as string);
            this.tables[this.table] ??= 0;
            this.mode = 'values';
            this.inString = false;
            this.escaped = false;
            this.depth = 0;
            continue;
          }
        } else if (!nl && !PREFIXES.some((p) => p.startsWith(this.head) || this.head.startsWith(p))) {
          this.mode = 'skip';
        }
        if (nl) {
          this.line(this.head);
          this.head = '';
          continue;
        }
        if (this.mode === 'head' && this.head.length > HEAD_MAX) this.mode = 'skip';
        continue;
      }
      // values
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (c === 0x5c) this.escaped = true;
        else if (c === 0x27) this.inString = false;
        continue;
      }
      if (c === 0x27) this.inString = true;
      else if (c === 0x28) {
        if (this.depth === 0) this.tables[this.table] = (this.tables[this.table] ?? 0) + 1;
        this.depth++;
      } else if (c === 0x29) this.depth--;
      else if (c === 0x3b && this.depth === 0) this.mode = 'skip';
    }
  }
}

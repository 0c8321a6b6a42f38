import { Transform, type TransformCallback } from 'node:stream';

/** `\connect moodle`, or for names that need quoting `\connect -reuse-previous=on "dbname='we''ird'"`. */
const CONNECT = /^\\connect (?:-reuse-previous=on "dbname='((?:[^']|'')*)'"|(\S+))$/;
/** pg_dump's data blocks: `COPY public.mdl_user (id, username) FROM stdin;`, one row per line, then `\.`. */
const COPY = /^COPY (.+?)(?: \(.*\))? FROM stdin;$/;
/** Longest line we look at; data lines longer than this are only counted. */
const LINE_MAX = 64 * 1024;

/**
 * Counts the rows a plain-format pg_dump stream loads, per `database.schema.table` (the table as pg_dump
 * quotes it), while passing the bytes on unchanged. In COPY text format a row is one line (newlines in values
 * are escaped), so rows are the lines between `COPY … FROM stdin;` and `\.`. Every table gets a COPY block,
 * empty ones too, so they count 0.
 */
export class PgRowCounter extends Transform {
  readonly tables: Record<string, number> = {};
  private database = '';
  private table: string | null = null;
  private line: Buffer[] = [];
  private lineLength = 0;

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    let start = 0;
    for (let nl = chunk.indexOf(0x0a); nl !== -1; nl = chunk.indexOf(0x0a, start)) {
      this.keep(chunk.subarray(start, nl));
      this.endLine();
      start = nl + 1;
    }
    this.keep(chunk.subarray(start));
    cb(null, chunk);
  }

  private keep(part: Buffer): void {
    if (this.lineLength < LINE_MAX) this.line.push(part.subarray(0, LINE_MAX - this.lineLength));
    this.lineLength += part.length;
  }

  private endLine(): void {
    const text = Buffer.concat(this.line).toString('utf8');
    this.line = [];
    this.lineLength = 0;
    if (this.table !== null) {
      if (text === '\\.') this.table = null;
      else this.tables[this.table] = (this.tables[this.table] ?? 0) + 1;
      return;
    }
    const copy = COPY.exec(text);
    if (copy) {
      this.table = `${this.database}.${copy[1]}`;
      this.tables[this.table] ??= 0;
      return;
    }
    const connect = CONNECT.exec(text);
    if (connect)
      this.database = connect[1] !== undefined ? connect[1].replace(/''/g, "'") : (connect[2] as string);
  }
}

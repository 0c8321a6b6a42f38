/**
 * The ustar headers of a pack's entries (POSIX.1-1988, as GNU tar, busybox and bsdtar read them). A pack has
 * one kind of entry only, a regular file named `filedir/ab/cd/<sha1>` (54 bytes, fits the 100-byte name
 * field), so the writer builds headers itself: it knows every offset without a tar library in between.
 */

export const BLOCK = 512;

export interface TarFile {
  name: string;
  size: number;
  mode: number;
  uid: number;
  gid: number;
  mtimeMs: number;
}

/**
 * Octal digits, NUL-terminated, in a field of `width` bytes; GNU base-256 when the value does not fit (files
 * of 8 GiB and more) or is negative (an mtime before 1970): big-endian two's complement, the first byte's
 * top bit set (0x80 positive, 0xff negative).
 */
function numeric(buf: Buffer, offset: number, width: number, value: number): void {
  const octal = Math.trunc(value).toString(8);
  if (value >= 0 && octal.length <= width - 1) {
    buf.write(octal.padStart(width - 1, '0'), offset, 'ascii');
    buf[offset + width - 1] = 0;
    return;
  }
  let v = BigInt(Math.trunc(value));
  if (v < 0n) v += 1n << BigInt(8 * width);
  for (let i = width - 1; i >= 0; i--) {
    buf[offset + i] = Number(v & 0xffn);
    v >>= 8n;
  }
  buf[offset] = (buf[offset] as number) | 0x80;
}

export function fileHeader(f: TarFile): Buffer {
  if (Buffer.byteLength(f.name) > 100) throw new Error(`tar entry name too long: ${f.name}`);
  return header(f, 0x30); // '0': regular file
}

function header(f: TarFile, type: number): Buffer {
  const h = Buffer.alloc(BLOCK);
  h.write(f.name, 0, 'utf8');
  numeric(h, 100, 8, f.mode & 0o7777);
  numeric(h, 108, 8, f.uid);
  numeric(h, 116, 8, f.gid);
  numeric(h, 124, 12, f.size);
  numeric(h, 136, 12, Math.floor(f.mtimeMs / 1000));
  h.fill(0x20, 148, 156); // the checksum is computed with its own field as spaces
  h[156] = type;
  h.write('ustar\u000000', 257, 'binary'); // magic "ustar\0", version "00"
  // uname/gname stay empty: tar -x then uses the numeric ids, as Moodle's files need.
  let sum = 0;
  for (const byte of h) sum += byte;
  h.write(`${sum.toString(8).padStart(6, '0')}\u0000 `, 148, 'binary');
  return h;
}

/** One pax record, `<length> <key>=<value>\n`, its length counting its own digits. */
function paxRecord(key: string, value: string): string {
  const rest = Buffer.byteLength(` ${key}=${value}\n`);
  let len = rest + 1;
  while (String(len).length + rest !== len) len = String(len).length + rest;
  return `${len} ${key}=${value}\n`;
}

/**
 * A directory entry as a pax extended header (the path whatever its length, the mtime to the millisecond)
 * and the ustar header it applies to: what `tar -x` needs to make a directory, or give an existing one
 * its owner, mode and time.
 */
export function dirEntry(d: Omit<TarFile, 'size'>): Buffer {
  const data = Buffer.from(paxRecord('path', d.name) + paxRecord('mtime', (d.mtimeMs / 1000).toFixed(3)));
  const short = Buffer.byteLength(d.name) <= 100 ? d.name : 'PaxPath';
  // The ustar field holds whole seconds from 1970 only; the pax record is what tar uses.
  const mtimeMs = Math.max(0, d.mtimeMs);
  return Buffer.concat([
    header({ name: 'PaxHeader', mode: 0o644, uid: 0, gid: 0, mtimeMs, size: data.length }, 0x78), // 'x'
    data,
    padding(data.length),
    header({ ...d, mtimeMs, name: short, size: 0 }, 0x35), // '5': directory
  ]);
}

/** Zero bytes that pad `size` bytes of data to the next block boundary. */
export function padding(size: number): Buffer {
  const rest = size % BLOCK;
  return Buffer.alloc(rest === 0 ? 0 : BLOCK - rest);
}

/** Bytes an entry of `size` data bytes takes in the tar: header + data + padding. */
export function entryBytes(size: number): number {
  return BLOCK + Math.ceil(size / BLOCK) * BLOCK;
}

/** The end of an archive: two zero blocks. */
export const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK);

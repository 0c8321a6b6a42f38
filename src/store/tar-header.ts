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

/** Octal digits, NUL-terminated, in a field of `width` bytes; base-256 (GNU) when the value does not fit. */
function numeric(buf: Buffer, offset: number, width: number, value: number): void {
  const octal = Math.trunc(value).toString(8);
  if (octal.length <= width - 1) {
    buf.write(octal.padStart(width - 1, '0'), offset, 'ascii');
    buf[offset + width - 1] = 0;
    return;
  }
  // Base-256: first byte 0x80, the value big-endian in the rest (files of 8 GiB and more).
  let v = BigInt(Math.trunc(value));
  for (let i = width - 1; i > 0; i--) {
    buf[offset + i] = Number(v & 0xffn);
    v >>= 8n;
  }
  buf[offset] = 0x80;
}

export function fileHeader(f: TarFile): Buffer {
  if (Buffer.byteLength(f.name) > 100) throw new Error(`tar entry name too long: ${f.name}`);
  const h = Buffer.alloc(BLOCK);
  h.write(f.name, 0, 'utf8');
  numeric(h, 100, 8, f.mode & 0o7777);
  numeric(h, 108, 8, f.uid);
  numeric(h, 116, 8, f.gid);
  numeric(h, 124, 12, f.size);
  numeric(h, 136, 12, Math.floor(f.mtimeMs / 1000));
  h.fill(0x20, 148, 156); // the checksum is computed with its own field as spaces
  h[156] = 0x30; // '0': regular file
  h.write('ustar\u000000', 257, 'binary'); // magic "ustar\0", version "00"
  // uname/gname stay empty: tar -x then uses the numeric ids, as Moodle's files need.
  let sum = 0;
  for (const byte of h) sum += byte;
  h.write(`${sum.toString(8).padStart(6, '0')}\u0000 `, 148, 'binary');
  return h;
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

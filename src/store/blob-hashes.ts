import type { Readable } from 'node:stream';
import { SidecarError } from '../common/errors.js';
import { BLOB_LIST_HEADER, BLOB_LIST_HEADERS, decodeList, type ListSource } from './blob-list.js';

const NL = 10;
const TAB = 9;
const DASH = 45;
const HEADERS = BLOB_LIST_HEADERS.map((h) => Buffer.from(h, 'ascii'));
const CURRENT = Buffer.from(BLOB_LIST_HEADER, 'ascii');

function nibble(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

/**
 * Only the hashes of a stored blob list (store/blob-list.ts), for prune's mark: each line's first 40 hex
 * digits decoded straight from the bytes into one reused 20-byte buffer, with no string or object a line.
 * (The full reader makes both, and for a million blobs V8 kept ~70 MB of that garbage in the RSS.) The
 * stored bytes' sha256 is checked at the end; returns the number of blobs. Act on the hashes only then.
 */
export async function readBlobHashes(
  source: Readable,
  o: ListSource,
  onHash: (sha1: Uint8Array) => void,
  /** A blob line to leave out (neither hashed nor counted), by its bytes: a base's line a delta replaces. */
  skip?: (buf: Buffer, start: number, end: number) => boolean,
): Promise<number> {
  const bad = (why: string) => new SidecarError('INTEGRITY_FAILED', `${o.where}: ${why}`);
  const hash = new Uint8Array(20);
  let count = 0;
  let header = false;
  let dirs = false;
  let carry = Buffer.alloc(0);
  const line = (buf: Buffer, start: number, end: number) => {
    if (!header) {
      const first = buf.subarray(start, end);
      if (!HEADERS.some((h) => first.equals(h))) throw bad('not a blob list');
      header = true;
      dirs = first.equals(CURRENT);
      return;
    }
    if (dirs && buf[start] === DASH && buf[start + 1] === TAB) return; // a directory line (format 2)
    if (end - start < 42 || buf[start + 40] !== TAB) throw bad(`malformed blob list line ${count + 1}`);
    if (skip?.(buf, start, end)) return;
    for (let k = 0; k < 20; k++) {
      const hi = nibble(buf[start + 2 * k] ?? 0);
      const lo = nibble(buf[start + 2 * k + 1] ?? 0);
      if (hi < 0 || lo < 0) throw bad(`malformed blob list line ${count + 1}`);
      hash[k] = (hi << 4) | lo;
    }
    onHash(hash);
    count++;
  };
  const { tap, text, feed } = decodeList(source, o, 1 << 16);
  try {
    for await (const chunk of text) {
      const buf = carry.length > 0 ? Buffer.concat([carry, chunk as Buffer]) : (chunk as Buffer);
      let start = 0;
      for (let nl = buf.indexOf(NL, start); nl >= 0; nl = buf.indexOf(NL, start)) {
        line(buf, start, nl);
        start = nl + 1;
      }
      carry = Buffer.from(buf.subarray(start));
    }
    await feed;
  } catch (err) {
    if (err instanceof SidecarError) throw err;
    throw bad(`the blob list does not decode: ${(err as Error).message}`);
  } finally {
    if (!text.readableEnded) text.destroy(); // stopped early: do not leave the download running
  }
  if (carry.length > 0 || !header) throw bad('the blob list is truncated');
  if (tap.digest() !== o.sha256)
    throw bad(`the blob list does not match its checksum (sha256 ${tap.digest()})`);
  return count;
}

import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { extract } from 'tar-stream';

/**
 * The first regular file of a tar stream (Docker's archive API answers one path as a tarball), up to `limit`
 * bytes; null when the tarball holds none. A tarball cut short (the container was killed while it was read)
 * rejects with the parser's error: the entry stream fails with it too, and an entry without an error
 * listener would throw it out of the process.
 */
export async function firstTarFile(tar: NodeJS.ReadableStream, limit: number): Promise<Buffer | null> {
  const ex = extract();
  let result: Buffer | null = null;
  ex.on('entry', (header, entry, next) => {
    const chunks: Buffer[] = [];
    let size = 0;
    entry.on('error', () => undefined); // the same error reaches the pipeline through the parser
    entry.on('data', (d: unknown) => {
      if (!Buffer.isBuffer(d)) return;
      size += d.length;
      if (size <= limit) chunks.push(d);
    });
    entry.on('end', () => {
      if (result === null && header.type === 'file') result = Buffer.concat(chunks);
      next();
    });
  });
  await pipeline(tar as Readable, ex);
  return result;
}

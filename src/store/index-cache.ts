import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { idOfKey, indexKey } from './layout.js';

/** A reader's reusable buffer (loading a million blobs' index must not leave a copy of each file to collect). */
export interface Scratch {
  buf: Buffer;
}

/**
 * Plain copies of the store's index files on the sidecar's state volume. With age recipients only (the
 * sidecar holds no secret key), the index files in the target are ciphertext it cannot read; the copies of
 * those it wrote itself let the next backup know what the store holds. A new host starts without them: its
 * first backup stores every blob again (correct, only slower), and a run with the identity fills the cache.
 */
export class IndexCache {
  constructor(readonly dir: string) {}

  /** The plain copy, or null; with `scratch`, read into that buffer (grown to fit) and valid until its next use. */
  async get(id: string, scratch?: Scratch): Promise<Buffer | null> {
    if (!scratch) return readFile(join(this.dir, id)).catch(() => null);
    const fh = await open(join(this.dir, id), 'r').catch(() => null);
    if (!fh) return null;
    try {
      const size = (await fh.stat()).size;
      if (scratch.buf.length < size) scratch.buf = Buffer.allocUnsafe(size);
      let n = 0;
      while (n < size) {
        const { bytesRead } = await fh.read(scratch.buf, n, size - n, n);
        if (bytesRead === 0) break;
        n += bytesRead;
      }
      return scratch.buf.subarray(0, n);
    } finally {
      await fh.close();
    }
  }

  async put(id: string, plain: Buffer): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const tmp = join(this.dir, `.${randomBytes(6).toString('hex')}.tmp`);
    await writeFile(tmp, plain, { mode: 0o600 });
    await rename(tmp, join(this.dir, id));
  }

  /** Drops copies of index files the store no longer has (a prune removed them). */
  async retain(ids: ReadonlySet<string>): Promise<void> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    for (const name of names) {
      if (!ids.has(name) || idOfKey(indexKey(name)) === null) await rm(join(this.dir, name), { force: true });
    }
  }
}

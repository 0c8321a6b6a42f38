import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256OfFile, sha256OfHandle } from '../../../src/store/store-io.js';

/**
 * The pack restore hands a pack's open descriptor to the decompressor and hashes the same descriptor: the
 * hash must read at its own offsets, or the child (which shares the file position) would read past bytes.
 */
describe('sha256 of a stored file', () => {
  let dir: string;
  let path: string;
  const bytes = randomBytes(3 * (1 << 20) + 123);
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mbst-store-io-'));
    path = join(dir, 'pack');
    await writeFile(path, bytes);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('of a path and of an open handle: the sha256 and size of its bytes', async () => {
    const want = { id: createHash('sha256').update(bytes).digest('hex'), storedSize: bytes.length };
    expect(await sha256OfFile(path)).toEqual(want);
    const fh = await open(path, 'r');
    try {
      expect(await sha256OfHandle(fh)).toEqual(want);
    } finally {
      await fh.close();
    }
  });

  it('leaves the shared file position alone: a child given the descriptor afterwards reads every byte', async () => {
    const fh = await open(path, 'r');
    try {
      await sha256OfHandle(fh);
      const seen = execFileSync('sha256sum', { stdio: [fh.fd, 'pipe', 'pipe'] })
        .toString()
        .slice(0, 64);
      expect(seen).toBe(createHash('sha256').update(bytes).digest('hex'));
    } finally {
      await fh.close();
    }
  });
});

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fileChunks } from '../../../src/common/file-chunks.js';

describe('fileChunks', () => {
  it("gives a file's bytes in order through one reused buffer, and nothing for an empty file", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'file-chunks-'));
    try {
      const data = Buffer.from(Array.from({ length: 10_000 }, (_, i) => `line ${i}\n`).join(''));
      await writeFile(join(dir, 'f'), data);
      const copies: Buffer[] = [];
      const buffers = new Set<ArrayBufferLike>();
      for await (const c of fileChunks(join(dir, 'f'), 4096)) {
        expect(c.length).toBeLessThanOrEqual(4096);
        copies.push(Buffer.from(c));
        buffers.add(c.buffer);
      }
      expect(Buffer.concat(copies).equals(data)).toBe(true);
      expect(copies.length).toBe(Math.ceil(data.length / 4096));
      expect(buffers.size).toBe(1);
      await writeFile(join(dir, 'empty'), '');
      const none = [];
      for await (const c of fileChunks(join(dir, 'empty'))) none.push(c);
      expect(none).toEqual([]);
      await expect(async () => {
        for await (const _ of fileChunks(join(dir, 'missing'))) break;
      }).rejects.toMatchObject({ code: 'ENOENT' });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

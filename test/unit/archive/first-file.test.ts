import { Readable } from 'node:stream';
import { pack } from 'tar-stream';
import { describe, expect, it } from 'vitest';
import { firstTarFile } from '../../../src/archive/first-file.js';

async function tarball(files: Record<string, string>): Promise<Buffer> {
  const p = pack();
  for (const [name, body] of Object.entries(files)) p.entry({ name }, body);
  p.finalize();
  const chunks: Buffer[] = [];
  for await (const c of p) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe('firstTarFile', () => {
  it('returns the first regular file, cut at the limit', async () => {
    const tar = await tarball({ 'state.json': '{"a":1}', other: 'x' });
    expect((await firstTarFile(Readable.from([tar]), 1024))?.toString()).toBe('{"a":1}');
    expect(await firstTarFile(Readable.from([await tarball({})]), 1024)).toBeNull();
  });

  it('rejects a tarball cut inside a file body, and nothing escapes as an uncaught error', async () => {
    const tar = await tarball({ 'state.json': 'y'.repeat(5000) });
    const uncaught: unknown[] = [];
    const onUncaught = (e: unknown) => uncaught.push(e);
    process.on('uncaughtException', onUncaught);
    try {
      await expect(firstTarFile(Readable.from([tar.subarray(0, 1024)]), 1 << 20)).rejects.toThrow(
        /Unexpected end of data/,
      );
      await new Promise((r) => setTimeout(r, 50));
    } finally {
      process.off('uncaughtException', onUncaught);
    }
    expect(uncaught).toEqual([]);
  });
});

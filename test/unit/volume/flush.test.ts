import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { flushFileSystem } from '../../../src/volume/flush.js';

describe('flushFileSystem: a staged copy is written to disk before the swap', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'flush-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('flushes the file system that holds a directory', async () => {
    await writeFile(join(dir, 'f'), 'data');
    await expect(flushFileSystem(dir)).resolves.toBeUndefined();
  });

  it('a directory that cannot be flushed is a RESTORE_FAILED that names it and says the old content stays', async () => {
    const gone = join(dir, 'gone');
    const err = await flushFileSystem(gone).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'RESTORE_FAILED' });
    expect((err as Error).message).toContain(gone);
    expect((err as { hint?: string }).hint).toMatch(/old content/);
  });
});

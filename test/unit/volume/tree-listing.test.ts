import {
  chmod,
  link,
  mkdir,
  mkdtemp,
  rename,
  rm,
  symlink,
  unlink,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { listTree } from '../../../src/volume/tree-listing.js';

/** ctime moves in clock ticks: wait past one so a change is certain to show. */
const TICK_MS = 20;

describe('listTree', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mbst-listing-'));
    await mkdir(join(dir, 'lib/classes'), { recursive: true });
    await writeFile(join(dir, 'version.php'), '<?php $version = 2024100700;\n');
    await writeFile(join(dir, 'lib/classes/a b\nc.php'), 'odd name\n');
    await symlink('version.php', join(dir, 'link'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('is stable while nothing changes, and counts every entry (the top directory too)', async () => {
    const a = await listTree(dir);
    const b = await listTree(dir);
    expect(b).toEqual(a);
    expect(a.entries).toBe(6);
    expect(a.digest).toMatch(/^[0-9a-f]{64}$/);
    expect(a.newestChangeMs).toBeGreaterThan(Date.now() - 60_000);
  });

  it.each<[string, (d: string) => Promise<unknown>]>([
    [
      'a rewrite of the same size',
      (d) => writeFile(join(d, 'version.php'), '<?php $version = 2024100800;\n'),
    ],
    [
      'a rewrite with the old mtime put back',
      async (d) => {
        await writeFile(join(d, 'version.php'), '<?php $version = 2024100800;\n');
        await utimes(join(d, 'version.php'), new Date(0), new Date(0));
      },
    ],
    ['a chmod', (d) => chmod(join(d, 'version.php'), 0o600)],
    ['a new file', (d) => writeFile(join(d, 'lib/new.php'), '')],
    ['a removed file', (d) => unlink(join(d, 'lib/classes/a b\nc.php'))],
    ['a rename', (d) => rename(join(d, 'version.php'), join(d, 'version2.php'))],
    [
      'a symlink pointed elsewhere',
      async (d) => {
        await unlink(join(d, 'link'));
        await symlink('lib', join(d, 'link'));
      },
    ],
    ['a second name (hard link)', (d) => link(join(d, 'version.php'), join(d, 'lib/v.php'))],
  ])('changes with %s', async (_what, change) => {
    const before = await listTree(dir);
    await sleep(TICK_MS);
    await change(dir);
    expect((await listTree(dir)).digest).not.toBe(before.digest);
  });

  it('fails on a directory that is not there', async () => {
    await expect(listTree(join(dir, 'missing'))).rejects.toThrow(/find/);
  });
});

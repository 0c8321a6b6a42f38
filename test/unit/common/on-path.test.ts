import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { onPath } from '../../../src/common/on-path.js';

describe('onPath: is a tool there, without running it', () => {
  let dir: string;
  const path = process.env.PATH;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'on-path-'));
    await writeFile(join(dir, 'mbs-tool-x'), '#!/bin/sh\n', { mode: 0o755 });
    await writeFile(join(dir, 'mbs-tool-plain'), 'not a program', { mode: 0o644 });
    await mkdir(join(dir, 'mbs-tool-dir'), { mode: 0o755 });
    process.env.PATH = `${dir}:${path}`;
  });
  afterAll(async () => {
    process.env.PATH = path;
    await rm(dir, { recursive: true, force: true });
  });

  it('finds an executable file in any PATH directory, and only that', () => {
    expect(onPath('mbs-tool-x')).toBe(true);
    expect(onPath('sh')).toBe(true);
    expect(onPath('mbs-tool-plain')).toBe(false); // not executable
    expect(onPath('mbs-tool-dir')).toBe(false); // a directory
    expect(onPath('mbs-tool-nowhere')).toBe(false);
  });
});

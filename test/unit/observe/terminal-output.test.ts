import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { table } from '../../../src/cli/output.js';
import { TarFileCounter } from '../../../src/observe/tar-count.js';

describe('TarFileCounter', () => {
  it('counts the regular files of a GNU tar fed in odd-sized pieces, skipping dirs, links and long names', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tty-count-'));
    try {
      await mkdir(join(dir, 'a/b'), { recursive: true });
      for (let i = 0; i < 37; i++) await writeFile(join(dir, 'a', `f${i}`), Buffer.alloc(i * 700, i));
      await writeFile(join(dir, 'a/b', 'x'.repeat(150)), 'long name'); // GNU ././@LongLink header
      await writeFile(join(dir, 'empty'), '');
      await symlink('empty', join(dir, 'link'));
      const tar = execFileSync('tar', ['-C', dir, '-cf', '-', '.'], { maxBuffer: 1 << 26 });
      for (const piece of [1, 511, 513, 4096, tar.length]) {
        const c = new TarFileCounter();
        for (let at = 0; at < tar.length; at += piece) c.push(tar.subarray(at, at + piece));
        expect(c.ok).toBe(true);
        expect(c.files, `pieces of ${piece}`).toBe(39);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('stops counting on bytes that are not a tar', () => {
    const c = new TarFileCounter();
    c.push(Buffer.alloc(2048, 7));
    expect(c.ok).toBe(false);
  });
});

describe('table fitted to a width', () => {
  const headers = ['ID', 'TIME (UTC)', 'VOLUMES', 'STATUS'];
  const rows = [
    ['20270101T000000Z-abcd', '2027-01-01T00:00:00Z', 'mariadb_data,moodle_data,moodledata_data', 'ok'],
  ];

  it('is unchanged when it fits or when no width is given', () => {
    const full = table(headers, rows);
    expect(table(headers, rows, { width: 200, wrap: 2 })).toBe(full);
    expect(table(headers, rows, { wrap: 2 })).toBe(full);
  });

  it('wraps the wrap column at commas, then drops columns in order, never cutting a word', () => {
    const out = table(headers, rows, { width: 50, wrap: 2, drop: [1] }).split('\n');
    for (const l of out) expect(l.length, l).toBeLessThanOrEqual(50);
    expect(out[0]).not.toContain('TIME');
    expect(out.join('\n')).toContain('20270101T000000Z-abcd');
    expect(out.map((l) => l.slice(23).trim().split(/\s+/)[0])).toEqual([
      'VOLUMES',
      'mariadb_data,',
      'moodle_data,',
      'moodledata_data',
    ]);
  });
});

import { execFileSync } from 'node:child_process';
import { link, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TarExclude } from '../../../src/archive/tar-exclude.js';
import { excludeMatcher, invalidExcludeRules } from '../../../src/config/exclude-rules.js';

const LONG = `${'very-long-directory-name-'.repeat(6)}/${'file-name-longer-than-the-ustar-field-'.repeat(4)}.txt`;

/** A Moodle-like tree with what makes tar streams hard: long and non-ASCII names, hard links, symlinks. */
async function makeTree(root: string): Promise<void> {
  for (const d of ['cache/a/b', 'localcache/x', 'temp/t', 'filedir/ab/cd', 'lang/de', 'sessions', 'cachex'])
    await mkdir(join(root, d), { recursive: true });
  await mkdir(join(root, LONG, '..'), { recursive: true });
  await writeFile(join(root, LONG), 'long');
  await writeFile(join(root, 'cache/a/b/c.php'), 'x'.repeat(3000));
  await writeFile(join(root, 'localcache/x/y'), 'y');
  await writeFile(join(root, 'temp/t/z'), 'z'.repeat(700));
  await writeFile(join(root, 'filedir/ab/cd/abcd'), 'blob');
  await writeFile(join(root, 'sessions/sess_1'), 's');
  await writeFile(join(root, 'cachex/keep'), 'k');
  await writeFile(join(root, 'moodle-cron.log'), 'log');
  await writeFile(join(root, 'lang/de/Übungsblätter é 日本語.txt'), 'ü');
  await link(join(root, 'filedir/ab/cd/abcd'), join(root, 'trash-link'));
  await writeFile(join(root, 'cache/linked'), 'l');
  await link(join(root, 'cache/linked'), join(root, 'outside-link-to-excluded'));
  await symlink('de', join(root, 'lang/current'));
}

function tarOf(root: string, format: string): Buffer {
  return execFileSync('tar', ['-c', `--format=${format}`, '-C', root, '.'], { maxBuffer: 64 << 20 });
}

function listing(tar: Buffer): string[] {
  return execFileSync('tar', ['-t'], { input: tar, maxBuffer: 64 << 20, stdio: ['pipe', 'pipe', 'ignore'] })
    .toString()
    .split('\n')
    .filter(Boolean)
    .sort();
}

async function filter(tar: Buffer, rules: string[], chunk = 777): Promise<{ out: Buffer; f: TarExclude }> {
  const f = new TarExclude(rules);
  const parts: Buffer[] = [];
  // Odd chunk sizes: headers and bodies split across chunk boundaries.
  const chunks = [];
  for (let i = 0; i < tar.length; i += chunk) chunks.push(tar.subarray(i, i + chunk));
  await pipeline(Readable.from(chunks), f, async (src: AsyncIterable<Buffer>) => {
    for await (const c of src) parts.push(c);
  });
  return { out: Buffer.concat(parts), f };
}

const RULES = ['cache/', 'localcache/', 'temp/', 'sessions/', 'moodle-cron.log'];

describe('TarExclude (byte-level tar filter)', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'mbst-tarex-'));
    await makeTree(join(root, 'v'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  for (const format of ['pax', 'gnu', 'ustar']) {
    it(`${format}: drops contents of dir/ rules but keeps the directory, drops name rules whole`, async () => {
      if (format === 'ustar') {
        // ustar cannot hold the long name: use a tree without it.
        await rm(join(root, 'v', LONG.split('/')[0] as string), { recursive: true, force: true });
      }
      const tar = tarOf(join(root, 'v'), format);
      const { out, f } = await filter(tar, RULES);
      const before = listing(tar);
      const after = listing(out);
      const dropped = before.filter((p) => !after.includes(p));
      expect(dropped.sort()).toEqual(
        [
          './cache/a/',
          './cache/a/b/',
          './cache/a/b/c.php',
          './cache/linked',
          './localcache/x/',
          './localcache/x/y',
          './moodle-cron.log',
          './outside-link-to-excluded',
          './sessions/sess_1',
          './temp/t/',
          './temp/t/z',
        ].sort(),
      );
      // The kept directories are still there (a restore recreates them empty), the neighbour is untouched.
      for (const p of [
        './cache/',
        './localcache/',
        './temp/',
        './sessions/',
        './cachex/keep',
        './trash-link',
      ])
        expect(after).toContain(p);
      if (format !== 'ustar') expect(after).toContain(`./${LONG}`);
      expect(after).toContain('./lang/de/Übungsblätter é 日本語.txt');
      expect(f.stats.entries).toBe(dropped.length);
      expect(f.stats.bytes).toBe(3000 + 1 + 700 + 1 + 3 + 1);
      // The result is a valid archive that extracts, with the kept file contents intact.
      const dest = join(root, `x-${format}`);
      await mkdir(dest);
      execFileSync('tar', ['-x', '-C', dest], { input: out });
      expect(execFileSync('cat', [join(dest, 'filedir/ab/cd/abcd')]).toString()).toBe('blob');
      expect(execFileSync('cat', [join(dest, 'trash-link')]).toString()).toBe('blob');
    });
  }

  it('no rules: the bytes pass unchanged', async () => {
    const tar = tarOf(join(root, 'v'), 'pax');
    const { out } = await filter(tar, [], 512);
    expect(out.equals(tar)).toBe(true);
  });

  it('a truncated archive stays truncated (the damage reaches the consumer)', async () => {
    const tar = tarOf(join(root, 'v'), 'pax');
    const cut = tar.subarray(0, 2048 + 100);
    const { out } = await filter(cut, ['cache/']);
    expect(() => listing(out)).toThrow();
  });
});

describe('exclude rules', () => {
  it('match paths relative to the volume root, `*` within one segment', () => {
    const m = excludeMatcher(['cache/', 'moodle-cron.log', 'filedir/*/tmp', './lock/']);
    expect(m('cache')).toBe(false);
    expect(m('cache/x')).toBe(true);
    expect(m('cachex/y')).toBe(false);
    expect(m('a/cache/x')).toBe(false);
    expect(m('moodle-cron.log')).toBe(true);
    expect(m('moodle-cron.log.1')).toBe(false);
    expect(m('filedir/ab/tmp')).toBe(true);
    expect(m('filedir/ab/tmp/x')).toBe(true);
    expect(m('filedir/ab/cd/tmp')).toBe(false);
    expect(m('lock/x')).toBe(true);
    expect(m('')).toBe(false);
  });

  it('rules that would drop the whole volume or climb out are refused', () => {
    expect(invalidExcludeRules(['cache/', 'temp'])).toEqual([]);
    expect(invalidExcludeRules(['/', '*', '../etc', 'a/./b'])).toHaveLength(4);
  });
});

import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { formatBlobLine, formatDirLine } from '../../../src/store/blob-list.js';
import { BlobPathKeys, diffLists, GONE_PREFIX, pathStart } from '../../../src/store/list-delta.js';
import { deltaLimit } from '../../../src/store/snapshot-list.js';

const sha1 = (s: string) => createHash('sha1').update(s).digest('hex');
const at = (area: string, h: string) => `${area}/${h.slice(0, 2)}/${h.slice(2, 4)}/${h}`;
const blob = (name: string, o: { area?: string; mtimeMs?: number; mode?: number } = {}) => {
  const h = sha1(name);
  return formatBlobLine({
    sha1: h,
    size: name.length,
    mode: o.mode ?? 0o640,
    uid: 33,
    gid: 33,
    mtimeMs: o.mtimeMs ?? 1_700_000_000_000,
    path: at(o.area ?? 'filedir', h),
  });
};
const dir = (path: string, mtimeMs = 1_700_000_000_000) =>
  formatDirLine({ path, mode: 0o750, uid: 33, gid: 33, mtimeMs });

/** A source read as many times as asked, in chunks that cut lines anywhere. */
const source = (text: string) => () =>
  (async function* () {
    const b = Buffer.from(text);
    for (let i = 0; i < b.length; i += 37) yield b.subarray(i, i + 37);
  })();

async function diff(base: string[], current: string[], limit = 1000) {
  const out: string[] = [];
  const r = await diffLists({
    base: source(base.join('')),
    current: source(current.join('')),
    limit,
    out: async (line) => {
      out.push(line.toString());
    },
  });
  return { r, out };
}

/** What a reader makes of base + delta: the base's lines at a path the delta names replaced or gone. */
function apply(base: string[], delta: string[]): string[] {
  const path = (l: string) => l.trimEnd().split('\t').at(-1) as string;
  const named = new Set(delta.map(path));
  return [...base.filter((l) => !named.has(path(l))), ...delta.filter((l) => !l.startsWith(GONE_PREFIX))];
}

describe('diffLists', () => {
  const base = [blob('a'), blob('b'), blob('c'), blob('t', { area: 'trashdir' }), dir('filedir/86/f7')];

  it('an unchanged list is an empty difference with the same blob count', async () => {
    const { r, out } = await diff(base, [...base].reverse());
    expect(out).toEqual([]);
    expect(r).toEqual({ lines: 0, blobs: 4 });
  });

  it('writes new and changed lines and a gone line per path the list lost; base + delta is the list', async () => {
    const current = [
      blob('a'),
      blob('b', { mtimeMs: 1_800_000_000_000 }), // touched: same path, another line
      blob('d'), // new
      blob('c', { area: 'trashdir' }), // moved to trashdir: gone from filedir, new in trashdir
      dir('filedir/86/f7', 1_800_000_000_000),
    ];
    const { r, out } = await diff(base, current);
    expect(out.sort()).toEqual(
      [
        blob('b', { mtimeMs: 1_800_000_000_000 }),
        blob('d'),
        blob('c', { area: 'trashdir' }),
        dir('filedir/86/f7', 1_800_000_000_000),
        `${GONE_PREFIX}${at('filedir', sha1('c'))}\n`,
        `${GONE_PREFIX}${at('trashdir', sha1('t'))}\n`,
      ].sort(),
    );
    expect(r).toEqual({ lines: 6, blobs: 4 });
    expect(apply(base, out).sort()).toEqual([...current].sort());
  });

  it('on 20,000 lines with a random tenth changed, base + delta is exactly the list', async () => {
    let seed = 7;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const big = Array.from({ length: 20_000 }, (_, i) => blob(`file ${i}`));
    const current = big
      .map((l, i) => (rand() < 0.03 ? blob(`file ${i}`, { mtimeMs: 1_900_000_000_000 }) : l)) // touched
      .filter(() => rand() > 0.05); // deleted
    for (let i = 0; i < 1000; i++) current.push(blob(`new ${i}`));
    const { r, out } = await diff(big, current, 10_000);
    expect(apply(big, out).sort()).toEqual([...current].sort());
    expect(r?.blobs).toBe(current.length);
    expect(r?.lines).toBe(out.length);
  });

  it('gives up (null) once the difference passes the limit', async () => {
    const many = Array.from({ length: 10 }, (_, i) => blob(`new ${i}`));
    expect((await diff(base, [...base, ...many], 10)).r).toEqual({ lines: 10, blobs: 14 });
    expect((await diff(base, [...base, ...many], 9)).r).toBeNull();
    // Gone lines count too.
    expect((await diff([...base, ...many], base, 9)).r).toBeNull();
  });

  it('a limit at least 4,096 lines, at most 32,768, else an eighth of the base', () => {
    expect(deltaLimit(100)).toBe(4096);
    expect(deltaLimit(80_000)).toBe(10_000);
    expect(deltaLimit(10_000_000)).toBe(32_768);
  });
});

describe('BlobPathKeys', () => {
  it('knows exactly the paths added, read from a line without making a string of it', () => {
    const keys = new BlobPathKeys();
    const a = at('filedir', sha1('a'));
    const t = at('trashdir', sha1('a'));
    keys.add(a);
    keys.add('filedir/odd/place/not-a-sha1');
    keys.seal();
    const has = (line: string) => {
      const buf = Buffer.from(line);
      return keys.has(buf, pathStart(buf, 0, buf.length), buf.length);
    };
    expect(has(blob('a').trimEnd())).toBe(true);
    expect(has(blob('a', { area: 'trashdir' }).trimEnd())).toBe(false);
    expect(has(`x\t${t}`)).toBe(false);
    expect(has(`x\t${at('filedir', sha1('b'))}`)).toBe(false);
    // The same name in another fan-out directory is another path.
    expect(has(`x\tfiledir/00/00/${sha1('a')}`)).toBe(false);
    expect(has('x\tfiledir/odd/place/not-a-sha1')).toBe(true);
    expect(keys.size).toBe(2);
  });
});

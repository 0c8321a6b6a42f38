import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { getCodec } from '../../../src/archive/codec.js';
import { LocalBackend } from '../../../src/storage/local.js';
import { formatBlobLine } from '../../../src/store/blob-list.js';
import type { StoreEncoding } from '../../../src/store/encoding.js';
import { listKey } from '../../../src/store/layout.js';
import { type KeptBase, writeSnapshotList } from '../../../src/store/snapshot-list.js';

const ZSTD: StoreEncoding = { codec: getCodec('zstd') };
const sha1 = (s: string) => createHash('sha1').update(s).digest('hex');
const line = (i: number, size = 100 + i) => {
  const h = sha1(`blob ${i}`);
  return formatBlobLine({
    path: `filedir/${h.slice(0, 2)}/${h.slice(2, 4)}/${h}`,
    sha1: h,
    size,
    mode: 0o640,
    uid: 33,
    gid: 33,
    mtimeMs: 1_700_000_000_000 + i,
  });
};
const textOf = (n: number, changed: number[] = []) =>
  Array.from({ length: n }, (_, i) => line(i, changed.includes(i) ? 7 : 100 + i)).join('');

describe('writeSnapshotList: the last snapshot said again', () => {
  let dir: string;
  let backend: LocalBackend;
  let kept: KeptBase;
  let reads = 0;
  const source = (text: string) => () => {
    reads++;
    return Readable.from([Buffer.from(text)]);
  };
  const stored = (path: string) => execFileSync('zstd', ['-dc', path], { encoding: 'utf8' });

  /** One run, as backup/blobs.ts writes a list and keeps its base and last list for the next. */
  async function run(n: string, text: string, likelySame: boolean) {
    const r = await writeSnapshotList({
      backend,
      encoding: ZSTD,
      text: source(text),
      count: text.split('\n').length - 1,
      bytes: 0,
      path: join(dir, `${n}.list`),
      basePath: join(dir, `${n}.base`),
      baseLinesPath: join(dir, `${n}.base.lines`),
      deltaLinesPath: join(dir, `${n}.delta`),
      previous: kept,
      likelySame,
    });
    if (r.newBase) {
      await backend.put(listKey(r.base.sha256), Readable.from([await readFile(r.newBase.path)]));
      kept = { ...r.base, linesPath: join(dir, `${n}.base.lines`), textSha256: r.newBase.textSha256 };
    }
    if (r.last && !r.again) kept = { ...kept, last: r.last };
    return { ...r, list: stored(join(dir, `${n}.list`)) };
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'snapshot-list-'));
    backend = new LocalBackend(join(dir, 'target'));
    reads = 0;
    const first = await writeSnapshotList({
      backend,
      encoding: ZSTD,
      text: source(textOf(50)),
      count: 50,
      bytes: 0,
      path: join(dir, '0.list'),
      basePath: join(dir, '0.base'),
      baseLinesPath: join(dir, '0.base.lines'),
      deltaLinesPath: join(dir, '0.delta'),
    });
    await backend.put(listKey(first.base.sha256), Readable.from([await readFile(join(dir, '0.base'))]));
    kept = {
      ...first.base,
      linesPath: join(dir, '0.base.lines'),
      textSha256: first.newBase?.textSha256 as string,
      ...(first.last ? { last: first.last } : {}),
    };
    // A new base's text is its own: its last list has an empty delta.
    expect(first.last).toEqual({ textSha256: kept.textSha256, count: 50 });
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes the same list again without a diff when the text is the last one, and diffs otherwise', async () => {
    const changed = textOf(50, [3, 9]);
    const two = await run('2', changed, false);
    expect(two.again).toBeUndefined();
    expect(two.last?.deltaPath).toBe(join(dir, '2.delta'));
    expect(two.list.split('\n').length).toBe(2 + 2 + 1); // header, base line, two changed lines
    reads = 0;
    const three = await run('3', changed, true);
    expect(three.again).toBe(true);
    expect(three.list).toBe(two.list);
    expect(reads).toBe(1); // hashed once, never diffed
    // Unchanged since a new base: an empty delta said again.
    reads = 0;
    kept = { ...kept, last: { textSha256: kept.textSha256, count: 50 } };
    const four = await run('4', textOf(50), true);
    expect(four.again).toBe(true);
    expect(four.list.split('\n').filter(Boolean)).toHaveLength(2);
    // A text that is not the last one: hashed, then diffed after all.
    kept = { ...kept, last: two.last };
    reads = 0;
    const five = await run('5', textOf(50, [3]), true);
    expect(five.again).toBeUndefined();
    expect(five.list.split('\n').length).toBe(2 + 1 + 1);
    expect(reads).toBeGreaterThan(1);
  });

  it('a kept delta changed or gone on the state volume is not said again: the list is diffed', async () => {
    const changed = textOf(50, [1, 2, 3]);
    const two = await run('2', changed, false);
    await writeFile(
      join(dir, '2.delta'),
      (await readFile(join(dir, '2.delta'), 'utf8')).replace('\t7\t', '\t8\t'),
    );
    const three = await run('3', changed, true);
    expect(three.again).toBeUndefined();
    expect(three.list).toBe(two.list);
    await rm(join(dir, '3.delta'));
    const four = await run('4', changed, true);
    expect(four.again).toBeUndefined();
    expect(four.list).toBe(two.list);
  });
});

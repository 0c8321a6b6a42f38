import { describe, expect, it } from 'vitest';
import { LeafSet, LeafTable, leafSlot, leafSlotIn, slotPath } from '../../../src/store/leaf-table.js';

describe('leaf directory slots', () => {
  it("gives Moodle's leaf directories a slot each and round-trips it; any other name has none", () => {
    expect(leafSlot('filedir/00/00')).toBe(0);
    expect(leafSlot('filedir/ab/cd')).toBe(0xabcd);
    expect(leafSlot('trashdir/ff/ff')).toBe(65536 + 0xffff);
    for (const p of ['filedir/ab/cd', 'trashdir/0f/a9', 'filedir/ff/00'])
      expect(slotPath(leafSlot(p))).toBe(p);
    for (const p of [
      'filedir/AB/cd',
      'filedir/ab/c',
      'filedir/ab/cde',
      'other/ab/cd',
      'filedir/ab',
      'filedirx/ab/cd',
      'filedir/g0/00',
      'filedir/ab-cd',
    ])
      expect(leafSlot(p), p).toBe(-1);
    const line = Buffer.from('x\tfiledir/12/34/name\n');
    expect(leafSlotIn(line, 2, line.indexOf('/name'))).toBe(0x1234);
    expect(leafSlotIn(line, 2, line.indexOf('/34'))).toBe(-1);
  });
});

describe('LeafTable and LeafSet', () => {
  it('behave as a Map and a Set of paths, odd names included, and find changed and gone directories as a model does', () => {
    const before = new Map<string, number>();
    const now = new Map<string, number>();
    const names = ['filedir/00/01', 'filedir/ab/cd', 'trashdir/ab/cd', 'filedir/XY/zz', 'filedir/ab/cd.tmp'];
    for (let k = 0; k < 300; k++)
      names.push(
        `filedir/${(k * 7919).toString(16).padStart(4, '0').slice(-4, -2)}/${(k % 256).toString(16).padStart(2, '0')}`,
      );
    names.forEach((p, k) => {
      if (k % 5 !== 0) before.set(p, 1000 + k); // k % 5 === 0: new now
      if (k % 7 !== 0) now.set(p, k % 3 === 0 ? 2000 + k : 1000 + k); // k % 7 === 0: gone now
    });
    now.set('filedir/ee/ee', 5000); // changed at or after the margin: listed again whatever its ctime was
    before.set('filedir/ee/ee', 5000);
    const sinceMs = 4000;
    const t = LeafTable.from(now);
    const b = LeafTable.from(before);
    expect(t.size).toBe(now.size);
    expect(new Map(t)).toEqual(now);
    for (const [p, c] of now) expect(t.get(p)).toBe(c);
    expect(t.get('filedir/99/99')).toBeUndefined();
    const { changed, stale } = t.changedSince(b, sinceMs);
    const wantChanged = [...now].filter(([p, c]) => before.get(p) !== c || c >= sinceMs).map(([p]) => p);
    const wantStale = new Set([...wantChanged, ...[...before.keys()].filter((p) => !now.has(p))]);
    expect(new Set(changed)).toEqual(new Set(wantChanged));
    expect(changed.size).toBe(wantChanged.length);
    expect(new Set(stale)).toEqual(wantStale);
    expect(stale.size).toBe(wantStale.size);
    for (const p of names) expect(stale.has(p), p).toBe(wantStale.has(p));
    const s = new LeafSet().add('filedir/ab/cd').add('filedir/ab/cd').add('odd/name');
    expect(s.size).toBe(2);
    expect([...s]).toEqual(['filedir/ab/cd', 'odd/name']);
  });

  it('leaves out of both sets the odd names it is told to ignore, new, changed or gone', () => {
    const before = LeafTable.from(
      new Map([
        ['filedir/ab/c\td', 1],
        ['filedir/ab/gone\n', 1],
        ['filedir/XY/zz', 1],
      ]),
    );
    const now = LeafTable.from(
      new Map([
        ['filedir/ab/c\td', 2],
        ['filedir/ab/new\t', 2],
        ['filedir/XY/zz', 2],
        ['filedir/ab/cd', 2],
      ]),
    );
    const ignore = (p: string) => /[\t\n]/.test(p);
    const { changed, stale } = now.changedSince(before, 10, ignore);
    expect([...changed].sort()).toEqual(['filedir/XY/zz', 'filedir/ab/cd']);
    expect([...stale].sort()).toEqual(['filedir/XY/zz', 'filedir/ab/cd']);
    // Without it they are looked at again.
    const all = now.changedSince(before, 10);
    expect([...all.changed].sort()).toEqual([
      'filedir/XY/zz',
      'filedir/ab/c\td',
      'filedir/ab/cd',
      'filedir/ab/new\t',
    ]);
    expect(all.stale.has('filedir/ab/gone\n')).toBe(true);
  });

  it('keeps each leaf directory attributes beside its ctime', () => {
    const t = new LeafTable();
    t.set('filedir/ab/cd', 7, { mode: 0o750, uid: 1001, gid: 4294967294, mtimeMs: 1_700_000_000_123 });
    t.set('weird/dir', 8, { mode: 0o700, uid: 1, gid: 2, mtimeMs: 3 });
    expect([...t.entries()]).toEqual([
      ['filedir/ab/cd', 7, { mode: 0o750, uid: 1001, gid: 4294967294, mtimeMs: 1_700_000_000_123 }],
      ['weird/dir', 8, { mode: 0o700, uid: 1, gid: 2, mtimeMs: 3 }],
    ]);
    expect([...t.keys()]).toEqual(['filedir/ab/cd', 'weird/dir']);
    expect(new LeafTable().size).toBe(0);
    expect([...new LeafTable()]).toEqual([]);
  });
});

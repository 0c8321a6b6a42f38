import { describe, expect, it } from 'vitest';
import { missingBlobs, type PackContents, planSweep } from '../../../src/store/sweep.js';

/** Packs P1..: blobs named by letters, each of the given size. */
function packs(spec: Record<string, Record<string, number>>): PackContents[] {
  return Object.entries(spec).map(([id, blobs]) => ({
    id,
    storedSize: Object.values(blobs).reduce((a, b) => a + b, 0),
    blobs: Object.entries(blobs).map(([sha1, size]) => ({ sha1, size })),
  }));
}

/** The index's answer: the first pack listed that holds the blob. */
function holderIn(ps: PackContents[]) {
  return (sha1: string) => ps.find((p) => [...p.blobs].some((b) => b.sha1 === sha1))?.id;
}

describe('planSweep', () => {
  const store = packs({
    P1: { a: 10, b: 10, c: 10 },
    P2: { d: 5, e: 95 },
    P3: { f: 50, g: 50 },
    P4: { h: 1 },
    P5: { a: 10, i: 10 }, // a second copy of a (a repack that was not finished)
  });

  it.each([
    {
      name: 'every blob live: nothing to do',
      live: 'abcdefghi',
      expected: { dead: [], repack: [], keep: ['P1', 'P2', 'P3', 'P4', 'P5'] },
    },
    {
      name: 'nothing live: every pack dead',
      live: '',
      expected: { dead: ['P1', 'P2', 'P3', 'P4', 'P5'], repack: [], keep: [] },
    },
    {
      name: 'a pack mostly dead by bytes is repacked, one mostly live is kept',
      live: 'dfgi',
      expected: { dead: ['P1', 'P4'], repack: ['P2: d'], keep: ['P3', 'P5'] },
    },
    {
      name: 'exactly at the threshold is kept (below means strictly below)',
      live: 'fabc',
      expected: { dead: ['P2', 'P4'], repack: [], keep: ['P1', 'P3'], alsoDead: ['P5'] },
    },
    {
      name: 'a second copy of a live blob is dead weight in the pack the index does not point to',
      live: 'ai',
      expected: { dead: ['P2', 'P3', 'P4'], repack: ['P1: a'], keep: ['P5'] },
    },
  ])('$name', ({ live, expected }) => {
    const plan = planSweep(store, (h) => live.includes(h), holderIn(store), { repackBelow: 0.5 });
    expect({
      dead: plan.dead,
      repack: plan.repack.map((r) => `${r.id}: ${r.live.join('')}`),
      keep: plan.keep,
    }).toEqual({
      dead: [...expected.dead, ...(expected.alsoDead ?? [])].sort(),
      repack: expected.repack,
      keep: expected.keep,
    });
    expect(plan.freedBytes).toBe(
      store.filter((p) => plan.dead.includes(p.id)).reduce((n, p) => n + p.storedSize, 0),
    );
  });

  it('the threshold is configurable: 0 never repacks, 1 repacks every pack with a dead byte', () => {
    const live = (h: string) => 'abde'.includes(h);
    expect(planSweep(store, live, holderIn(store), { repackBelow: 0 }).repack).toEqual([]);
    expect(planSweep(store, live, holderIn(store), { repackBelow: 1 }).repack.map((r) => r.id)).toEqual([
      'P1',
    ]);
    expect(() => planSweep(store, live, holderIn(store), { repackBelow: 1.5 })).toThrow(/0\.\.1/);
  });

  it('missingBlobs names live blobs no pack holds', () => {
    expect(missingBlobs(['a', 'x', 'h', 'y'], holderIn(store))).toEqual(['x', 'y']);
  });
});

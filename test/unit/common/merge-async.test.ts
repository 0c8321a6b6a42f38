import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { mergeAsync } from '../../../src/common/merge-async.js';

/** A source that yields its items with a pause before each, and records whether its `finally` ran. */
function source(items: string[], pauseMs: number, fail?: Error) {
  const state = { closed: false };
  const gen = (async function* () {
    try {
      for (const i of items) {
        await sleep(pauseMs);
        yield i;
      }
      if (fail) throw fail;
    } finally {
      state.closed = true;
    }
  })();
  return { gen, state };
}

describe('mergeAsync', () => {
  it('yields every item of every source, the sources running at once', async () => {
    // a2 comes only once b has started: read one after the other, this would never end.
    let bStarted: () => void = () => undefined;
    const started = new Promise<void>((resolve) => {
      bStarted = resolve;
    });
    const a = (async function* () {
      yield 'a1';
      await started;
      yield 'a2';
    })();
    const b = (async function* () {
      bStarted();
      yield 'b1';
      yield 'b2';
    })();
    const got: string[] = [];
    for await (const x of mergeAsync([a, b])) got.push(x);
    expect([...got].sort()).toEqual(['a1', 'a2', 'b1', 'b2']);
  });

  it("throws a source's failure after closing the others", async () => {
    const a = source(['a1'], 5, new Error('find failed'));
    const b = source(['b1', 'b2', 'b3', 'b4'], 40);
    const got: string[] = [];
    await expect(async () => {
      for await (const x of mergeAsync([a.gen, b.gen])) got.push(x);
    }).rejects.toThrow('find failed');
    expect(got).toContain('a1');
    expect(b.state.closed).toBe(true);
  });

  it('closes every source when the consumer stops early', async () => {
    const a = source(['a1', 'a2', 'a3'], 10);
    const b = source(['b1', 'b2', 'b3'], 15);
    for await (const _ of mergeAsync([a.gen, b.gen])) break;
    expect(a.state.closed && b.state.closed).toBe(true);
  });

  it('passes one source through and yields nothing for none', async () => {
    const got: string[] = [];
    for await (const x of mergeAsync([source(['x', 'y'], 1).gen])) got.push(x);
    for await (const x of mergeAsync<string>([])) got.push(x);
    expect(got).toEqual(['x', 'y']);
  });
});

import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { everyWhile } from '../../../src/common/every-while.js';

describe('everyWhile', () => {
  it('calls fn every period while the work runs, and resolves with its result', async () => {
    let calls = 0;
    const r = await everyWhile(
      sleep(260).then(() => 'done'),
      50,
      async () => {
        calls++;
      },
    );
    expect(r).toBe('done');
    expect(calls).toBeGreaterThanOrEqual(3);
    expect(calls).toBeLessThanOrEqual(6);
  });

  it('ends with the work, not with the period: no timer holds the caller (or the process) afterwards', async () => {
    const t0 = Date.now();
    await everyWhile(sleep(20), 10_000, async () => undefined);
    expect(Date.now() - t0).toBeLessThan(2_000);
  });

  it("rejects as the work does; fn's own failures are ignored, and one call runs at a time", async () => {
    let running = 0;
    let most = 0;
    const work = sleep(200).then(() => {
      throw new Error('work failed');
    });
    const r = everyWhile(work, 10, async () => {
      running++;
      most = Math.max(most, running);
      await sleep(40);
      running--;
      throw new Error('flush failed');
    });
    await expect(r).rejects.toThrow('work failed');
    expect(most).toBe(1);
    expect(running).toBe(0);
  });
});

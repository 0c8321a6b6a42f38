import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fileTime, secondsTime } from '../../../src/common/file-time.js';
import { findTimeMs } from '../../../src/common/find-time.js';

describe("find's times and utimes, before and after 1970", () => {
  it('reads find’s seconds and nanoseconds, which it prints side by side even when the seconds are negative', () => {
    expect(findTimeMs('1700000000.1239999999')).toBe(1_700_000_000_123);
    expect(findTimeMs('1700000000')).toBe(1_700_000_000_000);
    expect(findTimeMs('0.5')).toBe(500);
    // -1.25 s is -2 s and 0.75 s after it.
    expect(findTimeMs('-2.7500000000')).toBe(-1_250);
    expect(findTimeMs('-1.7500000000')).toBe(-250);
    expect(findTimeMs('-315619200.0000000000')).toBe(-315_619_200_000);
    for (const bad of ['', '-', 'x', '1.2.3', '1e3', '12 ', '-.5']) expect(findTimeMs(bad), bad).toBeNaN();
  });

  it('sets a file’s time to the millisecond, as find then reads it, on either side of 1970', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mbs-time-'));
    try {
      const file = join(dir, 'f');
      writeFileSync(file, '');
      const read = () => findTimeMs(execFileSync('find', [file, '-printf', '%T@']).toString());
      for (const ms of [1_733_000_000_123, 999, 0, -1, -1_250, -315_619_199_877, -2_000_000_000_001]) {
        utimesSync(file, fileTime(ms), fileTime(ms));
        expect(read(), String(ms)).toBe(ms);
      }
      for (const s of [1_733_000_000.5, -315_619_200, -1.25]) {
        utimesSync(file, secondsTime(s), secondsTime(s));
        expect(read(), String(s)).toBe(s * 1000);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

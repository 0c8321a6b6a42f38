import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { framesWanted } from '../../../src/store/encoding.js';
import { type FrameTable, frameStarts, planRuns } from '../../../src/store/frames.js';
import { CLI_NODE } from '../../harness/cli-node.js';

const table = (lengths: number[], frameBytes = 1000): FrameTable => ({
  frameBytes,
  lengths: Uint32Array.from(lengths),
});

describe('planRuns: which frames of a pack hold some blobs', () => {
  const t = table([100, 200, 300, 400, 500, 600]); // starts 0 100 300 600 1000 1500, total 2100

  it('starts add up the compressed lengths', () => {
    expect([...frameStarts(t)]).toEqual([0, 100, 300, 600, 1000, 1500, 2100]);
  });

  it('a blob inside one frame, one spanning three, and an empty one that needs none', () => {
    const runs = planRuns(
      t,
      [
        { offset: 4200, size: 10 }, // frame 4
        { offset: 1512, size: 1700 }, // frames 1..3 (1512..3211)
        { offset: 5000, size: 0 },
      ],
      0,
    );
    expect(runs).toEqual([{ first: 1, last: 4, start: 100, end: 1500 }]);
  });

  it('runs apart stay apart unless closer than the gap', () => {
    const blobs = [
      { offset: 10, size: 5 }, // frame 0
      { offset: 2500, size: 5 }, // frame 2
      { offset: 5999, size: 1 }, // frame 5
    ];
    expect(planRuns(t, blobs, 0)).toEqual([
      { first: 0, last: 0, start: 0, end: 100 },
      { first: 2, last: 2, start: 300, end: 600 },
      { first: 5, last: 5, start: 1500, end: 2100 },
    ]);
    // Gap 200: frame 1 (200 bytes) is read through; frames 3 and 4 (900 bytes) are not.
    expect(planRuns(t, blobs, 200)).toEqual([
      { first: 0, last: 2, start: 0, end: 600 },
      { first: 5, last: 5, start: 1500, end: 2100 },
    ]);
  });

  it('a blob that ends exactly on a frame boundary does not need the next frame', () => {
    expect(planRuns(t, [{ offset: 1000, size: 1000 }], 0)).toEqual([
      { first: 1, last: 1, start: 100, end: 300 },
    ]);
  });

  it('bytes past the last frame are refused (an index that does not fit its pack)', () => {
    expect(() => planRuns(t, [{ offset: 5990, size: 20 }], 0)).toThrow(RangeError);
  });
});

describe('framesWanted: BACKUP_STORE_FRAMES', () => {
  it('auto frames packs for a remote target only; on and off say so everywhere', () => {
    expect(framesWanted(undefined, false)).toBe(true);
    expect(framesWanted('auto', false)).toBe(true);
    expect(framesWanted('auto', true)).toBe(false);
    expect(framesWanted('on', true)).toBe(true);
    expect(framesWanted('off', false)).toBe(false);
  });
});

describe("FrameCompressor, under the product's Node", () => {
  it('cuts every 1 MiB of input into a frame that decodes alone, whatever the size; the lengths add up; from a file the same', () => {
    const MiB = 1024 * 1024;
    const sizes = [0, 1, MiB - 1, MiB, MiB + 1, 3 * MiB, 5 * MiB + 12345];
    const script = fileURLToPath(new URL('../../harness/frames-check.mjs', import.meta.url));
    const { results, ranged } = JSON.parse(
      execFileSync(CLI_NODE, [script, ...sizes.map(String)], { encoding: 'utf8' }),
    );
    // A blob across two frames read by range gives its bytes; a server that sends more than the range is refused.
    // The same pack age-encrypted: the blob out of the frames' age chunks alone; a damaged chunk is the pack's
    // damage, a key that is not the store's is refused as such.
    expect(ranged).toMatchObject({
      honoured: { ok: true, bytesRead: true },
      ignored: { code: 'STORAGE_FAILED' },
      age: { ok: true, bytesRead: true },
      ageDamaged: 'INTEGRITY_FAILED',
      ageStranger: 'DECRYPTION_FAILED',
    });
    expect(results).toEqual(
      sizes.map((size) => ({
        size,
        frames: Math.max(1, Math.ceil(size / MiB)),
        frameBytes: MiB,
        lengthsAddUp: true,
        whole: true,
        sameFromFile: true,
      })),
    );
  });
});

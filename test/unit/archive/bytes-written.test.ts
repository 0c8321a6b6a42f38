import { describe, expect, it } from 'vitest';
import { bytesWritten, type Manifest } from '../../../src/archive/manifest.js';

type Volume = Manifest['volumes'][number];
const volume = (storedBytes: number, blobs?: Partial<NonNullable<Volume['blobs']>>): Volume =>
  ({ storedBytes, ...(blobs ? { blobs: { storedBytes: 0, packBytes: 0, ...blobs } } : {}) }) as Volume;

describe('bytesWritten', () => {
  it("counts the archives, the dump, and an incremental volume's list, packs and a shared list it started", () => {
    const base = { sha256: 'a'.repeat(64), storedBytes: 7000, count: 10 };
    expect(
      bytesWritten({
        database: { storedBytes: 5 } as Manifest['database'],
        volumes: [
          volume(100),
          volume(10, { storedBytes: 88, packBytes: 1000, base: { ...base, added: true } }),
        ],
      }),
    ).toBe(5 + 100 + 10 + 88 + 1000 + 7000);
  });

  it('leaves out a shared list an earlier run stored (named, not written)', () => {
    const base = { sha256: 'a'.repeat(64), storedBytes: 7000, count: 10, added: false };
    expect(bytesWritten({ database: null, volumes: [volume(10, { storedBytes: 88, base })] })).toBe(98);
  });
});

import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { HashSet20 } from '../../../src/store/hash-set.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

describe('HashSet20', () => {
  it.each([
    { name: 'empty', adds: 0, dupes: 0, prefix: false },
    { name: 'one snapshot', adds: 5000, dupes: 0, prefix: false },
    { name: 'three snapshots sharing most blobs', adds: 3000, dupes: 6000, prefix: false },
    { name: 'names ground to share a prefix (one big bucket)', adds: 2000, dupes: 500, prefix: true },
  ])('$name: the same members as a plain Set, in order', ({ adds, dupes, prefix }) => {
    const set = new HashSet20();
    const model = new Set<string>();
    const all: Buffer[] = [];
    for (let i = 0; i < adds; i++) {
      const h = randomBytes(20);
      if (prefix) h.writeUInt16BE(0xabcd, 0);
      all.push(h);
      set.add(h);
      model.add(h.toString('hex'));
    }
    for (let i = 0; i < dupes; i++) set.add(all[(i * 7919) % all.length] as Buffer);
    expect(set.length).toBe(model.size);
    const listed = [...set.hashes()].map(hex);
    expect(listed).toEqual([...model].sort());
    for (const h of all.slice(0, 2000)) expect(set.has(h)).toBe(true);
    for (let i = 0; i < 200; i++) expect(set.has(randomBytes(20))).toBe(false);
  });

  it('a million blobs cost 20 bytes each (plus a pending batch while adding)', () => {
    const set = new HashSet20();
    const h = Buffer.alloc(20);
    for (let i = 0; i < 1_000_000; i++) {
      h.writeUInt32BE(i, 16);
      set.add(createHash('sha1').update(h).digest());
    }
    expect(set.length).toBe(1_000_000);
    expect(set.byteSize).toBe(20_000_000);
    // Four pending batches were sorted and merged: the whole is in strict order.
    let prev = '';
    for (const x of set.hashes()) {
      const now = hex(x);
      if (now <= prev) throw new Error(`out of order: ${prev} then ${now}`);
      prev = now;
    }
    h.writeUInt32BE(123_456, 16);
    expect(set.has(createHash('sha1').update(h).digest())).toBe(true);
    h.writeUInt32BE(1_000_001, 16);
    expect(set.has(createHash('sha1').update(h).digest())).toBe(false);
  });
});

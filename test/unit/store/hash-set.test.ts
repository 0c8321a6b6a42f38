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

  it('a hash added again just as a full pending batch is merged is kept once', () => {
    const set = new HashSet20();
    const batch = 262_144; // the pending batch's size: the next add merges it first
    const h = Buffer.alloc(20);
    for (let i = 0; i < batch; i++) {
      h.writeUInt32BE(i, 16);
      set.add(createHash('sha1').update(h).digest());
    }
    h.writeUInt32BE(7, 16);
    set.add(createHash('sha1').update(h).digest()); // pending, then merged by this very add
    set.add(createHash('sha1').update(h).digest());
    expect(set.length).toBe(batch);
  });

  it('reserved room is filled in place and positions follow hash order', () => {
    const set = new HashSet20();
    set.reserve(1000);
    const all = Array.from({ length: 1500 }, () => randomBytes(20));
    for (const h of all) set.add(h);
    for (const h of all.slice(0, 300)) set.add(h);
    const sorted = all.map(hex).sort();
    expect(set.length).toBe(1500);
    expect([...set.hashes()].map(hex)).toEqual(sorted);
    const at = sorted.indexOf(hex(all[42] as Buffer));
    const buf = Buffer.concat([Buffer.alloc(3), all[42] as Buffer]);
    expect(set.position(buf, 3)).toBe(at);
    expect(hex(set.hashAt(at))).toBe(hex(all[42] as Buffer));
    expect(set.position(randomBytes(20))).toBe(-1);
  });
});

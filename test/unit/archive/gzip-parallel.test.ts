import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { getCodec } from '../../../src/archive/codec.js';
import { ParallelGzip } from '../../../src/archive/gzip-parallel.js';
import { piped } from '../../harness/streams.js';

/** Text-like and random data in odd-sized pieces, as a tar stream arrives from Docker. */
function input(bytes: number): Buffer[] {
  const words = Buffer.from('moodle course forum quiz backup restore student teacher grade '.repeat(64));
  const parts: Buffer[] = [];
  let n = 0;
  let i = 0;
  while (n < bytes) {
    const size = Math.min(bytes - n, 1000 + ((i * 7919) % 70_000));
    parts.push(i % 3 === 0 ? randomBytes(size) : words.subarray(0, Math.min(size, words.length)));
    n += parts.at(-1)?.length ?? 0;
    i++;
  }
  return parts;
}

function compress(parts: Buffer[], gz = new ParallelGzip(6, 3)): Promise<Buffer> {
  return piped(parts, gz);
}

describe('parallel gzip (independent members on the thread pool)', () => {
  it('round-trips through Node gunzip and through the gzip binary, as several members', async () => {
    const parts = input(5 * 1024 * 1024 + 12345);
    const original = Buffer.concat(parts);
    const gz = await compress(parts);
    expect(zlib.gunzipSync(gz).equals(original)).toBe(true);
    const cli = spawnSync('gzip', ['-dc'], { input: gz, maxBuffer: 64 * 1024 * 1024 });
    expect(cli.status).toBe(0);
    expect(cli.stdout.equals(original)).toBe(true);
    // A gzip member ends with the size of its own input (ISIZE): the last member holds only the tail, so
    // the stream consists of several members, not one.
    expect(gz.readUInt32LE(gz.length - 4)).toBeLessThan(original.length / 4);
    // Members cost little: within 1 % of one single-stream gzip of the same data.
    expect(gz.length).toBeLessThan(zlib.gzipSync(original, { level: 6 }).length * 1.01);
  });

  it("the codec's own decompressor reads it (verify and restore use it)", async () => {
    const parts = input(3 * 1024 * 1024);
    const gz = await compress(parts, getCodec('gzip').compress(6) as ParallelGzip);
    const out = await piped([gz], getCodec('gzip').decompress());
    expect(out.equals(Buffer.concat(parts))).toBe(true);
  });

  it('empty input gives a valid, empty gzip file; keeps input order with many small writes', async () => {
    const empty = await compress([]);
    expect(zlib.gunzipSync(empty).length).toBe(0);
    const many = Array.from({ length: 3000 }, (_, i) => Buffer.from(`line ${i}\n`.repeat(100)));
    expect(zlib.gunzipSync(await compress(many)).equals(Buffer.concat(many))).toBe(true);
  });
});

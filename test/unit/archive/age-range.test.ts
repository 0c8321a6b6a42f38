import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { Decrypter, Encrypter, generateIdentity, identityToRecipient } from 'age-encryption';
import { describe, expect, it } from 'vitest';
import { AgePayload } from '../../../src/archive/age-range.js';
import { AGE_CHUNK, AgeDamage, ageHeaderEnd } from '../../../src/archive/age-stream.js';
import { storeFileKey } from '../../../src/archive/encryption.js';

/** An age file of `plain` (encrypted by the age library, as the sidecar does) and what opens its header. */
async function sealed(plain: Buffer, recipients = 1) {
  const ids = await Promise.all(Array.from({ length: recipients }, () => generateIdentity()));
  const e = new Encrypter();
  for (const id of ids) e.addRecipient(await identityToRecipient(id));
  const file = Buffer.from(await e.encrypt(plain));
  const end = ageHeaderEnd(file);
  const d = new Decrypter();
  d.addIdentity(ids[0] as string);
  const fileKey = await d.decryptHeader(file.subarray(0, end));
  return { file, end, fileKey, identity: ids[0] as string };
}

async function read(
  p: AgePayload,
  file: Buffer,
  start: number,
  end: number,
  chunk = 10_000,
): Promise<Buffer> {
  const { from, to } = p.span(start, end);
  const bytes = file.subarray(from, to);
  const parts = function* () {
    for (let i = 0; i < bytes.length; i += chunk) yield bytes.subarray(i, i + chunk);
  };
  const out: Buffer[] = [];
  for await (const b of p.plain(Readable.from(parts()), start, end)) out.push(b);
  return Buffer.concat(out);
}

describe('age-range: part of an age file opened without the rest', () => {
  it('gives back exactly the bytes asked for, wherever they start and end, for any size of file', async () => {
    for (const size of [1, AGE_CHUNK - 1, AGE_CHUNK, AGE_CHUNK + 1, 3 * AGE_CHUNK, 200_000]) {
      const plain = randomBytes(size);
      const { file, end, fileKey } = await sealed(plain);
      const p = new AgePayload(fileKey, file.subarray(end, end + 16), end, file.length);
      expect(p.plainSize).toBe(size);
      const ranges: [number, number][] = [
        [0, size],
        [0, 1],
        [size - 1, size],
        [Math.floor(size / 3), Math.floor((2 * size) / 3) + 1],
        [Math.min(AGE_CHUNK, size - 1), size],
      ];
      for (const [a, b] of ranges) {
        expect((await read(p, file, a, b)).equals(plain.subarray(a, b)), `${size}: ${a}–${b}`).toBe(true);
      }
      // Only the chunks the range lies in are read.
      if (size > 2 * AGE_CHUNK) {
        const { from, to } = p.span(AGE_CHUNK + 5, AGE_CHUNK + 10);
        expect(to - from).toBe(AGE_CHUNK + 16);
      }
    }
  });

  it('reads the header of a file with several recipients; the store key opens it, a stranger key does not', async () => {
    const plain = randomBytes(100_000);
    const { file, end, identity } = await sealed(plain, 3);
    expect(end).toBeGreaterThan(0);
    expect(file.subarray(end - 49, end).toString('latin1')).toMatch(/\n--- [A-Za-z0-9+/]{43}\n$/);
    expect(ageHeaderEnd(file.subarray(0, end - 1))).toBe(-1);
    const key = storeFileKey({ recipients: [], identities: [identity] }, 'store');
    const p = new AgePayload(
      await (key as NonNullable<typeof key>)(file.subarray(0, end)),
      file.subarray(end, end + 16),
      end,
      file.length,
    );
    expect((await read(p, file, 70_000, 90_000)).equals(plain.subarray(70_000, 90_000))).toBe(true);
    const stranger = storeFileKey({ recipients: [], identities: [await generateIdentity()] }, 'store');
    await expect((stranger as NonNullable<typeof stranger>)(file.subarray(0, end))).rejects.toMatchObject({
      code: 'DECRYPTION_FAILED',
    });
  });

  it('refuses a damaged chunk, a cut-short read and a file cut at a chunk boundary', async () => {
    const plain = randomBytes(3 * AGE_CHUNK + 100);
    const { file, end, fileKey } = await sealed(plain);
    const nonce = file.subarray(end, end + 16);
    const p = new AgePayload(fileKey, nonce, end, file.length);
    const bad = Buffer.from(file);
    const at = p.span(AGE_CHUNK + 1, AGE_CHUNK + 2).from + 100;
    bad[at] = (bad[at] as number) ^ 1;
    await expect(read(p, bad, AGE_CHUNK + 1, AGE_CHUNK + 2)).rejects.toThrow(AgeDamage);
    // The chunks before the damaged one still open: the damage is found where it is.
    expect((await read(p, bad, 0, 10)).equals(plain.subarray(0, 10))).toBe(true);
    const { from, to } = p.span(0, 2 * AGE_CHUNK);
    const cut = async () => {
      for await (const _ of p.plain(Readable.from([file.subarray(from, to - 1)]), 0, 2 * AGE_CHUNK));
    };
    await expect(cut()).rejects.toThrow(/cut short/);
    // A file cut after its 2nd chunk: that chunk was not sealed as the last, so it does not open as one.
    const short = end + 16 + 2 * (AGE_CHUNK + 16);
    const q = new AgePayload(fileKey, nonce, end, short);
    expect(q.plainSize).toBe(2 * AGE_CHUNK);
    await expect(read(q, file, AGE_CHUNK, AGE_CHUNK + 1)).rejects.toThrow(/does not open/);
    // And sizes no chunks make.
    expect(() => new AgePayload(fileKey, nonce, end, end + 16 + AGE_CHUNK + 16 + 5)).toThrow(AgeDamage);
  });
});

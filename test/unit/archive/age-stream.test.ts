import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Decrypter, Encrypter, generateIdentity, identityToRecipient } from 'age-encryption';
import { beforeAll, describe, expect, it } from 'vitest';
import { AGE_CHUNK, AGE_SEALED, ageHeaderEnd } from '../../../src/archive/age-stream.js';
import {
  decryptStage,
  encryptionPlan,
  type ManifestEncryption,
  storeDecrypter,
} from '../../../src/archive/encryption.js';
import { piped } from '../../harness/streams.js';

let id: string;
let recipient: string;
beforeAll(async () => {
  id = await generateIdentity();
  recipient = await identityToRecipient(id);
});

/** `data` through `stage` in pieces of the given sizes (cycled), collected. */
async function through(stage: NodeJS.ReadWriteStream, data: Buffer, pieces = [65536]): Promise<Buffer> {
  const parts = function* () {
    for (let off = 0, k = 0; off < data.length; k++) {
      const n = pieces[k % pieces.length] as number;
      yield data.subarray(off, off + n);
      off += n;
    }
  };
  return piped(parts(), stage);
}

const SIZES = [0, 1, AGE_CHUNK - 1, AGE_CHUNK, AGE_CHUNK + 1, 3 * AGE_CHUNK, 200_000];
const enc: ManifestEncryption = {
  scheme: 'age',
  format: 'age-encryption.org/v1',
  keyType: 'recipients',
  recipientTypes: ['X25519'],
  recipients: 1,
};
const where = { snapshot: 'S', volume: 'v', file: 'v.tar.zst.age' };

describe('age-stream: the payload sealed and opened with Node’s ChaCha20-Poly1305', () => {
  it('what it seals, the age library opens, byte for byte, for any size and any pieces', async () => {
    const plan = await encryptionPlan({ recipients: [recipient], identities: [] });
    for (const size of SIZES) {
      const plain = randomBytes(size);
      const sealed = await through((plan as NonNullable<typeof plan>).stage(), plain, [1, 7, 65_537, 4096]);
      const d = new Decrypter();
      d.addIdentity(id);
      expect(Buffer.from(await d.decrypt(sealed)).equals(plain), `size ${size}`).toBe(true);
      // And back through this process's own opening.
      const back = await through(
        decryptStage(where, enc, { recipients: [], identities: [id] }) as NodeJS.ReadWriteStream,
        sealed,
        [AGE_SEALED, 3, 100_000],
      );
      expect(back.equals(plain), `size ${size}, opened here`).toBe(true);
    }
  });

  it('what the age library sealed (every snapshot before this), it opens, in any pieces', async () => {
    for (const size of SIZES) {
      const plain = randomBytes(size);
      const e = new Encrypter();
      e.addRecipient(recipient);
      const sealed = Buffer.from(await e.encrypt(plain));
      for (const pieces of [[1], [AGE_SEALED], [AGE_SEALED + 1, 5], [1 << 20]]) {
        const open = storeDecrypter(
          { recipients: [], identities: [id] },
          'store',
        ) as () => NodeJS.ReadWriteStream;
        expect((await through(open(), sealed, pieces)).equals(plain), `size ${size}, pieces ${pieces}`).toBe(
          true,
        );
      }
    }
  });

  it('the age CLI (the reference, Go) opens what it seals, and what it sealed opens here', async () => {
    // scripts/provision.sh installs it: the by-hand restore of docs/format.md is `age -d`.
    const dir = await mkdtemp(join(tmpdir(), 'mbst-age-cli-'));
    try {
      const idFile = join(dir, 'key.txt');
      await writeFile(idFile, `${id}\n`, { mode: 0o600 });
      const plan = await encryptionPlan({ recipients: [recipient], identities: [] });
      for (const size of [0, AGE_CHUNK, 200_000]) {
        const plain = randomBytes(size);
        const sealed = join(dir, `ours-${size}.age`);
        await writeFile(sealed, await through((plan as NonNullable<typeof plan>).stage(), plain));
        expect(execFileSync('age', ['-d', '-i', idFile, sealed]).equals(plain), `age -d, ${size} B`).toBe(
          true,
        );
        const theirs = join(dir, `theirs-${size}.age`);
        await writeFile(join(dir, 'plain'), plain);
        execFileSync('age', ['-r', recipient, '-o', theirs, join(dir, 'plain')]);
        const open = storeDecrypter(
          { recipients: [], identities: [id] },
          'store',
        ) as () => NodeJS.ReadWriteStream;
        expect(
          (await through(open(), await readFile(theirs), [4096])).equals(plain),
          `age -r, ${size} B`,
        ).toBe(true);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('every file gets its own header, file key and nonce', async () => {
    const plan = await encryptionPlan({ recipients: [recipient], identities: [] });
    const a = await through((plan as NonNullable<typeof plan>).stage(), Buffer.alloc(1000));
    const b = await through((plan as NonNullable<typeof plan>).stage(), Buffer.alloc(1000));
    const [ha, hb] = [ageHeaderEnd(a), ageHeaderEnd(b)];
    expect(a.subarray(0, ha).equals(b.subarray(0, hb))).toBe(false);
    expect(a.subarray(ha, ha + 16).equals(b.subarray(hb, hb + 16))).toBe(false);
    expect(a.subarray(ha + 16).equals(b.subarray(hb + 16))).toBe(false);
  });

  it('a flipped bit, a file cut at a chunk boundary, another key: refused with the stage’s codes', async () => {
    const plan = await encryptionPlan({ recipients: [recipient], identities: [] });
    const plain = randomBytes(3 * AGE_CHUNK + 10);
    const sealed = await through((plan as NonNullable<typeof plan>).stage(), plain);
    const open = (cfg = { recipients: [], identities: [id] }) =>
      decryptStage(where, enc, cfg) as NodeJS.ReadWriteStream;
    const flipped = Buffer.from(sealed);
    const at = ageHeaderEnd(sealed) + 16 + AGE_SEALED + 5;
    flipped[at] = (flipped[at] as number) ^ 1;
    await expect(through(open(), flipped)).rejects.toMatchObject({
      code: 'INTEGRITY_FAILED',
      message: expect.stringMatching(/age chunk 1 does not open/),
    });
    const cut = sealed.subarray(0, ageHeaderEnd(sealed) + 16 + 2 * AGE_SEALED);
    await expect(through(open(), cut)).rejects.toMatchObject({ code: 'INTEGRITY_FAILED' });
    await expect(through(open(), sealed.subarray(0, 20))).rejects.toMatchObject({ code: 'INTEGRITY_FAILED' });
    await expect(
      through(open({ recipients: [], identities: [await generateIdentity()] }), sealed),
    ).rejects.toMatchObject({ code: 'DECRYPTION_FAILED' });
  });
});

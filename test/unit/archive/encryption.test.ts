import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Decrypter, generateIdentity, identityToRecipient } from 'age-encryption';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decryptStage, encryptionPlan, type ManifestEncryption } from '../../../src/archive/encryption.js';
import { isSidecarError, SidecarError } from '../../../src/common/errors.js';
import { loadConfig, redactConfig } from '../../../src/config/load.js';
import type { EncryptionConfig } from '../../../src/config/types.js';

let id: string;
let recipient: string;
let otherId: string;
let dir: string;
beforeAll(async () => {
  id = await generateIdentity();
  recipient = await identityToRecipient(id);
  otherId = await generateIdentity();
  dir = await mkdtemp(join(tmpdir(), 'mbst-age-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** `mb` MiB of random bytes in 1 MiB chunks, generated lazily (never held whole). */
function source(mb: number, seed: Buffer): Readable {
  return Readable.from(
    (function* () {
      for (let i = 0; i < mb; i++) {
        const block = createHash('sha512').update(seed).update(String(i)).digest();
        yield Buffer.alloc(1 << 20, block);
      }
    })(),
  );
}

function sink(): Writable & {
  bytes: Buffer[];
  hash: ReturnType<typeof createHash>;
  n: number;
  keep?: boolean;
} {
  const hash = createHash('sha256');
  const w = new Writable({
    write(chunk: Buffer, _e, cb) {
      hash.update(chunk);
      w.n += chunk.length;
      if (w.keep) w.bytes.push(chunk);
      cb();
    },
  }) as Writable & { bytes: Buffer[]; hash: typeof hash; n: number; keep?: boolean };
  w.bytes = [];
  w.hash = hash;
  w.n = 0;
  return w;
}

const where = { snapshot: 'S', volume: 'v', file: 'v.tar.zst.age' };

describe('age encryption stage', () => {
  it('round-trips 64 MiB through encrypt → decrypt in bounded memory; the ciphertext differs from the plaintext', async () => {
    const plan = await encryptionPlan({ recipients: [recipient], identities: [] });
    expect(plan?.manifest).toEqual({
      scheme: 'age',
      format: 'age-encryption.org/v1',
      keyType: 'recipients',
      recipientTypes: ['X25519'],
      recipients: 1,
    });
    const seed = randomBytes(8);
    const plain = sink();
    await pipeline(source(64, seed), plain);
    const cipherHash = createHash('sha256');
    let cipherBytes = 0;
    const out = sink();
    let peak = 0;
    const enc = plan?.stage();
    const dec = decryptStage(where, plan?.manifest ?? null, { recipients: [], identities: [id] });
    if (!enc || !dec) throw new Error('no stages');
    const tapCipher = new (await import('node:stream')).Transform({
      transform(c: Buffer, _e, cb) {
        cipherHash.update(c);
        cipherBytes += c.length;
        peak = Math.max(peak, process.memoryUsage().rss);
        cb(null, c);
      },
    });
    const rss0 = process.memoryUsage().rss;
    await pipeline(source(64, seed), enc, tapCipher, dec, out);
    expect(out.n).toBe(64 << 20);
    const plainHex = out.hash.digest('hex');
    expect(plainHex).toBe(plain.hash.digest('hex'));
    // age adds a header and 16 bytes per 64 KiB chunk.
    expect(cipherBytes).toBeGreaterThan(64 << 20);
    expect(cipherBytes).toBeLessThan((64 << 20) + 32 * 1024);
    expect(cipherHash.digest('hex')).not.toBe(plainHex);
    // Streaming, not buffering: far less extra memory than the 64 MiB that passed through.
    expect(peak - rss0).toBeLessThan(48 << 20);
  });

  it('writes standard age files: the age-encryption library decrypts them on its own', async () => {
    const plan = await encryptionPlan({ recipients: [recipient], identities: [] });
    const out = sink();
    out.keep = true;
    await pipeline(Readable.from([Buffer.from('hello age\n')]), plan?.stage() as NodeJS.ReadWriteStream, out);
    const file = Buffer.concat(out.bytes);
    expect(file.subarray(0, 21).toString()).toBe('age-encryption.org/v1');
    const d = new Decrypter();
    d.addIdentity(id);
    expect(await d.decrypt(file, 'text')).toBe('hello age\n');
  });

  it('a wrong identity is DECRYPTION_FAILED naming the snapshot and volume; no key at all is refused up front', async () => {
    const plan = await encryptionPlan({ recipients: [recipient], identities: [] });
    const enc = plan?.manifest as ManifestEncryption;
    const wrong = decryptStage(where, enc, { recipients: [], identities: [otherId] });
    const err = await pipeline(
      Readable.from([Buffer.from('secret data')]),
      plan?.stage() as NodeJS.ReadWriteStream,
      wrong as NodeJS.ReadWriteStream,
      sink(),
    ).catch((e: unknown) => e);
    expect(isSidecarError(err, 'DECRYPTION_FAILED'), String(err)).toBe(true);
    expect((err as SidecarError).message).toMatch(
      /snapshot S, volume v: the configured identities do not open/,
    );
    expect((err as SidecarError).message).not.toContain(otherId);
    expect(() => decryptStage(where, enc, undefined)).toThrow(
      /snapshot S is encrypted .* no identity is configured/,
    );
  });

  it('a damaged chunk is INTEGRITY_FAILED, not a key problem', async () => {
    const plan = await encryptionPlan({ recipients: [recipient], identities: [] });
    const out = sink();
    out.keep = true;
    await pipeline(Readable.from([randomBytes(200_000)]), plan?.stage() as NodeJS.ReadWriteStream, out);
    const file = Buffer.concat(out.bytes);
    file[file.length - 1000] = (file[file.length - 1000] ?? 0) ^ 1;
    const err = await pipeline(
      Readable.from([file]),
      decryptStage(where, plan?.manifest ?? null, {
        recipients: [],
        identities: [id],
      }) as NodeJS.ReadWriteStream,
      sink(),
    ).catch((e: unknown) => e);
    expect(isSidecarError(err, 'INTEGRITY_FAILED'), String(err)).toBe(true);
    expect((err as Error).message).toMatch(/does not decrypt/);
  });

  it('archives opened ahead (prepare) and on demand past them each get their own header and decrypt to their own bytes', async () => {
    const plan = await encryptionPlan({ recipients: [recipient], identities: [] });
    if (!plan) throw new Error('no plan');
    await plan.prepare(2);
    const files: Buffer[] = [];
    for (const text of ['first archive\n', 'second archive\n', 'third, opened on demand\n']) {
      const out = sink();
      out.keep = true;
      await pipeline(Readable.from([Buffer.from(text)]), plan.stage(), out);
      files.push(Buffer.concat(out.bytes));
    }
    const d = new Decrypter();
    d.addIdentity(id);
    expect(await Promise.all(files.map((f) => d.decrypt(f, 'text')))).toEqual([
      'first archive\n',
      'second archive\n',
      'third, opened on demand\n',
    ]);
    // The X25519 stanza carries a fresh ephemeral share per file key: no header is used twice.
    const headers = files.map((f) => f.subarray(0, f.indexOf('\n---')).toString());
    expect(new Set(headers).size).toBe(3);
  });

  it('only identities configured: backups are encrypted to their own recipients (never written in the clear)', async () => {
    const plan = await encryptionPlan({ recipients: [], identities: [id] });
    expect(plan?.manifest.keyType).toBe('recipients');
    expect(await encryptionPlan({ recipients: [], identities: [] })).toBeNull();
    expect(await encryptionPlan(undefined)).toBeNull();
  });
});

describe('encryption settings', () => {
  const load = (env: NodeJS.ProcessEnv) => loadConfig(env, { defaultFile: join(dir, 'absent.yml') });
  const problems = async (env: NodeJS.ProcessEnv) => {
    const err = await load(env).then(
      () => undefined,
      (e: unknown) => e,
    );
    if (!isSidecarError(err, 'CONFIG_INVALID')) throw new Error(`expected CONFIG_INVALID, got ${err}`);
    return err.message;
  };

  it('reads recipients, passphrase and identities from the environment and from *_FILE files', async () => {
    const idFile = join(dir, 'identity.txt');
    await writeFile(idFile, `# created: 2026-01-01T00:00:00Z\n# public key: ${recipient}\n${id}\n`);
    const rcpFile = join(dir, 'recipients.txt');
    await writeFile(rcpFile, `# ops team\n${recipient}\n`);
    const c = await load({ BACKUP_AGE_RECIPIENTS_FILE: rcpFile, BACKUP_AGE_IDENTITY_FILE: idFile });
    expect(c.encryption).toEqual({ recipients: [recipient], identities: [id] } satisfies EncryptionConfig);
    const p = join(dir, 'pass.txt');
    await writeFile(p, 'correct horse battery staple\n');
    expect((await load({ BACKUP_AGE_PASSPHRASE_FILE: p })).encryption?.passphrase).toBe(
      'correct horse battery staple',
    );
    // offen's names mean the same.
    expect((await load({ AGE_PUBLIC_KEYS: recipient })).encryption?.recipients).toEqual([recipient]);
  });

  it('bad keys are errors that name the variable and never echo a secret', async () => {
    const broken = `${id.slice(0, -4)}QQQQ`;
    const m = await problems({ BACKUP_AGE_IDENTITY: broken, BACKUP_AGE_RECIPIENTS: 'age1nope' });
    expect(m).toMatch(/BACKUP_AGE_IDENTITY: not a valid age identity/);
    expect(m).toMatch(/BACKUP_AGE_RECIPIENTS: (expected an age recipient|not a valid age recipient)/);
    expect(m).not.toContain(broken);
    const both = await problems({ BACKUP_AGE_RECIPIENTS: recipient, BACKUP_AGE_PASSPHRASE: 'pw-123456' });
    expect(both).toMatch(/BACKUP_AGE_PASSPHRASE: set either recipients or a passphrase, not both/);
    expect(both).not.toContain('pw-123456');
    expect(
      await problems({ BACKUP_AGE_PASSPHRASE: 'x', BACKUP_AGE_PASSPHRASE_FILE: '/nonexistent' }),
    ).toMatch(/BACKUP_AGE_PASSPHRASE and BACKUP_AGE_PASSPHRASE_FILE are both set/);
  });

  it('redactConfig hides the passphrase and identities', async () => {
    const c = await load({ BACKUP_AGE_PASSPHRASE: 'hunter2-long', BACKUP_AGE_IDENTITY: id });
    const text = JSON.stringify(redactConfig(c));
    expect(text).not.toContain('hunter2-long');
    expect(text).not.toContain(id);
    expect(new SidecarError('DECRYPTION_FAILED', 'x').code).toBe('DECRYPTION_FAILED');
  });
});

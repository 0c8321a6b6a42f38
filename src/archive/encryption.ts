import { randomBytes } from 'node:crypto';
import { Duplex } from 'node:stream';
import { z } from 'zod';
import { SidecarError } from '../common/errors.js';
import type { EncryptionConfig } from '../config/types.js';
import {
  AGE_NONCE,
  AgeDecrypt,
  AgeEncrypt,
  type AgeSealing,
  ageHeaderEnd,
  payloadKey,
} from './age-stream.js';

/**
 * Encryption at rest with age (the age-encryption package, age-encryption.org/v1): one age file per archive,
 * encrypted after compression, so the stored bytes (and their sha256) are the ciphertext. age's payload is
 * its STREAM format (64 KiB chunks), so memory stays bounded however large a volume is.
 */

/**
 * age-encryption on first use: 57 ES modules (~70 ms of CPU at every start here) that an unencrypted backup
 * never needs. Every use below is inside an async opening, so the import costs nothing on the way.
 */
const loadAge = () => import('age-encryption');

/** File name ending of an encrypted archive, after the codec's (`.tar.zst.age`). */
export const AGE_EXTENSION = '.age';

/** What the manifest says about a snapshot's encryption: how, never with what (no key, no fingerprint). */
export const encryptionSchema = z.object({
  scheme: z.literal('age'),
  format: z.literal('age-encryption.org/v1'),
  /** `recipients`: public keys (restore needs an identity); `passphrase`: scrypt (restore needs the passphrase). */
  keyType: z.enum(['recipients', 'passphrase']),
  /** Recipient kinds, e.g. ['X25519']; ['scrypt'] for a passphrase. */
  recipientTypes: z.array(z.string()),
  /** How many recipients each archive was encrypted to. */
  recipients: z.int().min(1),
});
export type ManifestEncryption = z.infer<typeof encryptionSchema>;

export interface EncryptionPlan {
  manifest: ManifestEncryption;
  /**
   * The public keys archives are encrypted to, for telling whether an earlier archive is readable with the
   * same identities (backup/reuse.ts); null with a passphrase, which has no public part to compare.
   */
  recipients: readonly string[] | null;
  /**
   * Opens `count` archives ahead: file key, recipient stanzas, header and payload key, all of which do not
   * depend on the data. A passphrase's scrypt costs ~1.3–2.5 s per archive here, so a backup does this before
   * it stops the stack instead of inside the downtime.
   */
  prepare(count: number): Promise<void>;
  /** A fresh encrypting stage for one archive (each archive gets its own file key): a prepared one if left. */
  stage(): Duplex;
}

/** The kind of an age recipient string, by its prefix (the types age-encryption supports). */
export function recipientType(r: string): string {
  if (r.startsWith('age1tagpq1')) return 'hybrid-tag';
  if (r.startsWith('age1tag1')) return 'tag';
  if (r.startsWith('age1pq1')) return 'ML-KEM-768+X25519';
  return 'X25519';
}

/**
 * How backups are encrypted under this configuration: to the recipients, with the passphrase, or, when only
 * identities are set, to those identities' own recipients (a restore's safety snapshot must not be written
 * in the clear just because the restore was given the secret key only). null = not encrypted.
 */
export async function encryptionPlan(cfg: EncryptionConfig | undefined): Promise<EncryptionPlan | null> {
  if (!cfg) return null;
  const { passphrase } = cfg;
  if (passphrase !== undefined) {
    return {
      manifest: {
        scheme: 'age',
        format: 'age-encryption.org/v1',
        keyType: 'passphrase',
        recipientTypes: ['scrypt'],
        recipients: 1,
      },
      recipients: null,
      ...encrypting(async (s) => {
        const e = new (await loadAge()).Encrypter();
        e.setPassphrase(passphrase);
        return e.encrypt(s);
      }),
    };
  }
  const recipients =
    cfg.recipients.length > 0
      ? cfg.recipients
      : await Promise.all(cfg.identities.map(async (id) => (await loadAge()).identityToRecipient(id)));
  if (recipients.length === 0) return null;
  return {
    manifest: {
      scheme: 'age',
      format: 'age-encryption.org/v1',
      keyType: 'recipients',
      recipientTypes: [...new Set(recipients.map(recipientType))],
      recipients: recipients.length,
    },
    recipients,
    ...sealing(() => sealingTo(recipients)),
  };
}

/**
 * One file's header to `recipients`, from the library, and the key its chunks are then sealed with here
 * (age-stream.ts: the library's JavaScript cipher took 25 s a GB). The library wraps the file key for each
 * recipient; one more recipient that adds no stanza sees that key. The library's own payload (of nothing) is
 * dropped with its nonce: the file gets a fresh one, which the header's MAC does not cover.
 */
async function sealingTo(recipients: readonly string[]): Promise<AgeSealing> {
  const e = new (await loadAge()).Encrypter();
  for (const r of recipients) e.addRecipient(r);
  let fileKey: Uint8Array | undefined;
  e.addRecipient({
    wrapFileKey: (k) => {
      fileKey = Uint8Array.from(k);
      return [];
    },
  });
  const empty = Buffer.from(await e.encrypt(new Uint8Array(0)));
  const end = ageHeaderEnd(empty);
  if (!fileKey || end < 0) throw new Error('age gave no header or no file key');
  const nonce = randomBytes(AGE_NONCE);
  return { head: Buffer.concat([empty.subarray(0, end), nonce]), key: payloadKey(fileKey, nonce) };
}

/** `prepare` and `stage` over sealings made ahead (a header each; every file its own key and nonce). */
function sealing(open: () => Promise<AgeSealing>): Pick<EncryptionPlan, 'prepare' | 'stage'> {
  return madeAhead(
    open,
    (s) => s,
    (s) => new AgeEncrypt(s),
  );
}

/**
 * `prepare` and `stage` over the library's own encryption (a passphrase: its scrypt stanza is made inside the
 * library, so the file key cannot be seen and the library seals the chunks). age's `encrypt` wraps the file
 * key and builds the header before it reads any plaintext, so an opening whose input is attached later is
 * complete ahead of time. Each opening is used once: every archive keeps its own file key, salt and nonce.
 */
function encrypting(open: Open): Pick<EncryptionPlan, 'prepare' | 'stage'> {
  return madeAhead(
    () => opening(open),
    (o) => o.output,
    (o) => webStage(o),
  );
}

/**
 * `prepare(count)` makes `count` openings ahead, each complete (`done`) before the next is started: a
 * passphrase's scrypt holds 256 MiB while it runs. `stage` uses the next one made, or makes one.
 */
function madeAhead<T>(
  make: () => T,
  done: (t: T) => Promise<unknown>,
  stage: (t: T) => Duplex,
): Pick<EncryptionPlan, 'prepare' | 'stage'> {
  const ready: T[] = [];
  return {
    async prepare(count) {
      for (let i = 0; i < count; i++) {
        const t = make();
        await done(t);
        ready.push(t);
      }
    },
    stage: () => stage(ready.shift() ?? make()),
  };
}

function describe(m: ManifestEncryption): string {
  return m.keyType === 'passphrase'
    ? 'age with a passphrase'
    : `age to ${m.recipients} recipient(s) (${m.recipientTypes.join(', ')})`;
}

function keyHint(m: ManifestEncryption): string {
  return m.keyType === 'passphrase'
    ? 'set BACKUP_AGE_PASSPHRASE (or BACKUP_AGE_PASSPHRASE_FILE) to the passphrase the backup was made with'
    : 'set BACKUP_AGE_IDENTITY (or BACKUP_AGE_IDENTITY_FILE) to the secret key of one of its recipients';
}

/**
 * Refuses early, before anything is read or touched, when a snapshot is encrypted and no key that could open
 * it is configured. A wrong key is found by the verification that reads every archive first.
 */
export function assertDecryptable(
  snapshot: string,
  enc: ManifestEncryption | null,
  cfg: EncryptionConfig | undefined,
): void {
  if (!enc) return;
  const has =
    enc.keyType === 'passphrase' ? cfg?.passphrase !== undefined : (cfg?.identities.length ?? 0) > 0;
  if (!has) {
    throw new SidecarError(
      'DECRYPTION_FAILED',
      `snapshot ${snapshot} is encrypted (${describe(enc)}) and no ${enc.keyType === 'passphrase' ? 'passphrase' : 'identity'} is configured; nothing was changed`,
      keyHint(enc),
    );
  }
}

/**
 * A decrypting stage for one archive, or undefined when the snapshot is not encrypted. A key that opens no
 * recipient is DECRYPTION_FAILED; a damaged header or chunk is INTEGRITY_FAILED.
 */
export function decryptStage(
  where: { snapshot: string; volume: string; file: string },
  enc: ManifestEncryption | null,
  cfg: EncryptionConfig | undefined,
): Duplex | undefined {
  if (!enc) return undefined;
  assertDecryptable(where.snapshot, enc, cfg);
  return new AgeDecrypt(headerKey(cfg), (err) => {
    const msg = (err as Error)?.message ?? String(err);
    if (/no identity matched/.test(msg)) {
      return new SidecarError(
        'DECRYPTION_FAILED',
        `snapshot ${where.snapshot}, volume ${where.volume}: the configured ${enc.keyType === 'passphrase' ? 'passphrase does' : 'identities do'} not open ${where.file} (encrypted ${describe(enc)}); nothing was changed`,
        keyHint(enc),
      );
    }
    return new SidecarError(
      'INTEGRITY_FAILED',
      `snapshot ${where.snapshot}, volume ${where.volume}: archive ${where.file} does not decrypt (age: ${msg})`,
      'this snapshot cannot be restored as it is; pick another one (`snapshots`)',
    );
  });
}

type Open = (input: ReadableStream<Uint8Array>) => Promise<ReadableStream<Uint8Array>>;

/** An age stream opened over an input that is attached later (its Node source). */
interface Opening {
  attach(source: AsyncIterator<Buffer>): void;
  output: Promise<ReadableStream<Uint8Array>>;
}

/**
 * Opens `open` over a web stream that pulls from a Node source once one is attached. Pull-based
 * (highWaterMark 0): a chunk is read from the Node side only when age asks for one.
 */
function opening(open: Open): Opening {
  let attach!: (source: AsyncIterator<Buffer>) => void;
  const source = new Promise<AsyncIterator<Buffer>>((resolve) => {
    attach = resolve;
  });
  const input = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const r = await (await source).next();
        if (r.done) controller.close();
        else controller.enqueue(Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value));
      },
      async cancel() {
        await (await source).return?.();
      },
    },
    { highWaterMark: 0 },
  );
  const output = open(input);
  // A rejection is seen where the output is awaited (prepare, or the stage); this only keeps it handled.
  output.catch(() => undefined);
  return { attach, output };
}

/**
 * A Node Duplex around an age opening. The generator pulls from the Node side on demand, so back-pressure
 * holds end to end and at most a few 64 KiB chunks are in flight.
 */
function webStage(o: Opening): Duplex {
  return Duplex.from(async function* (source: AsyncIterable<Buffer>) {
    o.attach(source[Symbol.asyncIterator]());
    const reader = (await o.output).getReader();
    try {
      for (;;) {
        const r = await reader.read();
        if (r.done) return;
        yield Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength);
      }
    } finally {
      reader.releaseLock();
    }
  });
}

/**
 * The file key of a store object from its age header (bytes up to and including the MAC line), with the
 * configured passphrase or identities: what reading part of a pack needs (age-range.ts). undefined when none
 * is configured. A key that opens nothing is DECRYPTION_FAILED; a header whose MAC fails throws.
 */
export function storeFileKey(
  cfg: EncryptionConfig | undefined,
  what: string,
): ((header: Uint8Array) => Promise<Uint8Array>) | undefined {
  if (!cfg || (cfg.passphrase === undefined && cfg.identities.length === 0)) return undefined;
  const open = headerKey(cfg);
  return (header) =>
    open(header).catch((err: unknown) => {
      throw noKey(cfg, what, err);
    });
}

/**
 * The file key from an age header (up to and including its MAC line) with the configured passphrase or
 * identities: the library opens the stanza and checks the header's MAC.
 */
function headerKey(cfg: EncryptionConfig | undefined): (header: Uint8Array) => Promise<Uint8Array> {
  return async (header) => {
    const d = new (await loadAge()).Decrypter();
    if (cfg?.passphrase !== undefined) d.addPassphrase(cfg.passphrase);
    for (const id of cfg?.identities ?? []) d.addIdentity(id);
    return d.decryptHeader(header);
  };
}

/** age's "no identity matched" as DECRYPTION_FAILED naming `what`; any other error as it is. */
function noKey(cfg: EncryptionConfig, what: string, err: unknown): unknown {
  return /no identity matched/.test((err as Error)?.message ?? '')
    ? new SidecarError(
        'DECRYPTION_FAILED',
        `the configured ${cfg.passphrase !== undefined ? 'passphrase does' : 'identities do'} not open the ${what}`,
        'set BACKUP_AGE_IDENTITY (or BACKUP_AGE_PASSPHRASE) to the key the backups were made with',
      )
    : err;
}

/**
 * A decrypting stage factory for the blob store's objects (packs, index files, blob lists), or undefined when
 * no passphrase or identity is configured. A key that opens nothing is DECRYPTION_FAILED naming `what`.
 */
export function storeDecrypter(cfg: EncryptionConfig | undefined, what: string): (() => Duplex) | undefined {
  const key = storeFileKey(cfg, what);
  return key && (() => new AgeDecrypt(key));
}

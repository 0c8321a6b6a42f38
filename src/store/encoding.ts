import type { Duplex } from 'node:stream';
import type { CodecImpl } from '../archive/codec.js';
import { storeDecrypter, storeFileKey } from '../archive/encryption.js';
import type { EncryptionConfig } from '../config/types.js';

/**
 * How the store's objects are encoded: packs go through the codec then (optionally) age, like archives;
 * index files only through age (hashes do not compress). Build the stages from the job's codec and
 * EncryptionPlan (encrypt) / decryptStage (decrypt).
 */
export interface StoreEncoding {
  codec: CodecImpl;
  level?: number;
  /** A fresh encrypting stage per object; absent = stored in the clear. */
  encrypt?: () => Duplex;
  /** A fresh decrypting stage per object, needed to read encrypted packs and index files. */
  decrypt?: () => Duplex;
  /** The file key of an encrypted object from its age header: reading part of a framed pack needs it. */
  fileKey?: (header: Uint8Array) => Promise<Uint8Array>;
  /** Write new packs as frames (frames.ts) where they can be: zstd, a Node with zstd in zlib. */
  frames?: boolean;
}

/**
 * How a restore or a verify reads the store with the configured keys: whole packs and index files through
 * `decrypt`, part of a framed pack through `fileKey` (a reader without it reads whole packs).
 */
export function readingEncoding(codec: CodecImpl, encryption: EncryptionConfig | undefined): StoreEncoding {
  return { codec, decrypt: storeDecrypter(encryption, 'store'), fileKey: storeFileKey(encryption, 'store') };
}

/** age's header line: an encrypted object starts with it. */
export const AGE_MAGIC = Buffer.from('age-encryption.org/v1\n', 'ascii');

/** Whether new packs are framed: the config's `storeFrames` (auto: for a target that is not a local directory). */
export function framesWanted(policy: 'auto' | 'on' | 'off' | undefined, localTarget: boolean): boolean {
  return policy === 'on' || ((policy ?? 'auto') === 'auto' && !localTarget);
}

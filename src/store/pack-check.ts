import { createHash } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { getCodec } from '../archive/codec.js';
import { HashTap } from '../archive/tap.js';
import { SidecarError } from '../common/errors.js';
import type { Backend } from '../storage/backend.js';
import type { StoreEncoding } from './encoding.js';
import type { PackRecord } from './index-file.js';
import { packKey } from './layout.js';
import { readPackTar } from './tar-reader.js';

export interface PackCheck {
  blobs: number;
  bytes: number;
}

/**
 * `verify --read-data` for one pack: downloads it, checks its sha256 against its id, decrypts and
 * decompresses it, and hashes every blob's data against its name; nothing is written. `onBlob` hears of each
 * blob found good (its raw SHA-1 and size), so a caller can check that the blobs it needs are there.
 */
export async function checkPack(
  backend: Backend,
  encoding: StoreEncoding,
  pack: PackRecord,
  o: { onBlob?: (sha1: Buffer, size: number) => void; signal?: AbortSignal } = {},
): Promise<PackCheck> {
  const { signal } = o;
  const fail = (why: string) =>
    new SidecarError(
      'INTEGRITY_FAILED',
      `pack ${pack.id} in ${backend.location}: ${why}`,
      'the snapshots that need this pack cannot be fully restored; take a new backup',
    );
  if (pack.encrypted && !encoding.decrypt) {
    throw new SidecarError(
      'DECRYPTION_FAILED',
      `pack ${pack.id} is encrypted and no age identity or passphrase is configured`,
      'set BACKUP_AGE_IDENTITY (or BACKUP_AGE_PASSPHRASE) to the key the backups were made with',
    );
  }
  const result: PackCheck = { blobs: 0, bytes: 0 };
  const tap = new HashTap();
  const tar = new PassThrough({ highWaterMark: 1 << 20 });
  const decrypt = pack.encrypted && encoding.decrypt ? [encoding.decrypt()] : [];
  const fetch = pipeline(
    [await backend.get(packKey(pack.id)), tap, ...decrypt, getCodec(pack.codec).decompress(), tar],
    signal ? { signal } : {},
  );
  const consume = readPackTar(tar, pack.id, async (e, data) => {
    const hash = createHash('sha1');
    for await (const chunk of data()) hash.update(chunk);
    const actual = hash.digest('hex');
    if (actual !== e.sha1) throw fail(`blob ${e.sha1} has SHA-1 ${actual}`);
    o.onBlob?.(Buffer.from(actual, 'hex'), e.size);
    result.blobs++;
    result.bytes += e.size;
  });
  const settled = await Promise.allSettled([
    consume.catch((err: unknown) => {
      tar.destroy();
      throw err;
    }),
    fetch,
  ]);
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) {
    const err = failed.reason as Error;
    throw err instanceof SidecarError ? err : fail(`does not decode: ${err?.message ?? String(err)}`);
  }
  if (tap.digest() !== pack.id) throw fail(`does not match its id (sha256 ${tap.digest()})`);
  return result;
}

import { createHash, randomBytes } from 'node:crypto';
import { chown, copyFile, mkdir, open, rename, rm, utimes } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { PassThrough } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { getCodec } from '../archive/codec.js';
import { HashTap } from '../archive/tap.js';
import { SidecarError } from '../common/errors.js';
import { fileTime } from '../common/file-time.js';
import type { Backend } from '../storage/backend.js';
import type { StoreEncoding } from './encoding.js';
import type { PackRecord } from './index-file.js';
import { blobPath, packKey } from './layout.js';
import { type PackEntry, readPackTar } from './tar-reader.js';

export interface ExtractOptions {
  backend: Backend;
  encoding: StoreEncoding;
  pack: PackRecord;
  /** The dataroot to write into. */
  dir: string;
  /**
   * Where a blob goes, relative to `dir`: none (skip it), one, or more (a blob in filedir/ and trashdir/,
   * or a file whose name is not its hash). Default: every blob to filedir/ab/cd/<sha1>. Restore passes the
   * snapshot's blob set here, so a pack's other blobs are not written.
   */
  placeAt?: (sha1: string) => readonly string[];
  /** Give files the owner recorded in the pack (needs root). Modes and mtimes are always applied. */
  owner?: boolean;
  signal?: AbortSignal;
}

export interface ExtractResult {
  blobs: number;
  bytes: number;
}

/**
 * Fetches one pack and writes the selected blobs into a directory. Each blob's SHA-1 is checked against its
 * name before the file appears under that name (written to a temp name, renamed after the check), and the
 * pack's sha256 against its id at the end: a damaged pack is INTEGRITY_FAILED and leaves no wrong file.
 */
export async function extractPack(o: ExtractOptions): Promise<ExtractResult> {
  const place = o.placeAt ?? ((sha1: string) => [blobPath(sha1)]);
  const result: ExtractResult = { blobs: 0, bytes: 0 };
  const tap = new HashTap();
  const tar = new PassThrough({ highWaterMark: 1 << 20 });
  const decrypt = o.pack.encrypted ? [packDecrypter(o.encoding, o.pack.id)] : [];
  const fetch = pipeline(
    [await o.backend.get(packKey(o.pack.id)), tap, ...decrypt, getCodec(o.pack.codec).decompress(), tar],
    o.signal ? { signal: o.signal } : {},
  );
  const consume = readPackTar(tar, o.pack.id, async (e, data) => {
    const [first, ...more] = place(e.sha1);
    if (first === undefined) return;
    await writeBlob(join(o.dir, first), e, data(), o);
    for (const rel of more) await copyBlob(join(o.dir, first), join(o.dir, rel), e, o);
    result.blobs++;
    result.bytes += e.size;
  });
  const settled = await Promise.allSettled([
    consume.catch((err: unknown) => {
      tar.destroy(); // stops the download too
      throw err;
    }),
    fetch,
  ]);
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) throw asIntegrity(failed.reason, o.pack.id);
  if (tap.digest() !== o.pack.id) {
    throw new SidecarError(
      'INTEGRITY_FAILED',
      `pack ${o.pack.id} in ${o.backend.location} does not match its id (sha256 ${tap.digest()})`,
      'the stored pack was changed or damaged; the blobs written from it were checked one by one',
    );
  }
  return result;
}

/** A codec or tar failure means the pack's bytes are wrong; storage and key errors keep their own codes. */
export function asIntegrity(err: unknown, packId: string): unknown {
  if (err instanceof SidecarError) return err;
  return new SidecarError(
    'INTEGRITY_FAILED',
    `pack ${packId} does not decode: ${(err as Error)?.message ?? String(err)}`,
    'the stored pack was changed or damaged; run `verify --read-data`',
    { cause: err },
  );
}

async function copyBlob(from: string, to: string, e: PackEntry, o: ExtractOptions): Promise<void> {
  await mkdir(dirname(to), { recursive: true });
  const tmp = `${dirname(to)}/.blob-${randomBytes(6).toString('hex')}.tmp`;
  try {
    await copyFile(from, tmp);
    if (o.owner) await chown(tmp, e.uid, e.gid);
    await utimes(tmp, fileTime(e.mtimeMs), fileTime(e.mtimeMs));
    await rename(tmp, to);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** The age stage of an encrypted pack; DECRYPTION_FAILED at once when no key is configured. */
export function packDecrypter(encoding: StoreEncoding, packId: string) {
  if (!encoding.decrypt) {
    throw new SidecarError(
      'DECRYPTION_FAILED',
      `pack ${packId} is encrypted and no age identity or passphrase is configured`,
      'set BACKUP_AGE_IDENTITY (or BACKUP_AGE_PASSPHRASE) to the key the backups were made with',
    );
  }
  return encoding.decrypt();
}

async function writeBlob(
  path: string,
  e: PackEntry,
  data: AsyncGenerator<Buffer>,
  o: ExtractOptions,
): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${dirname(path)}/.blob-${randomBytes(6).toString('hex')}.tmp`;
  const fh = await open(tmp, 'wx', 0o600);
  const hash = createHash('sha1');
  try {
    for await (const chunk of data) {
      hash.update(chunk);
      await fh.write(chunk);
    }
    const actual = hash.digest('hex');
    if (actual !== e.sha1) {
      throw new SidecarError(
        'INTEGRITY_FAILED',
        `pack ${o.pack.id}: blob ${e.sha1} has SHA-1 ${actual}`,
        'the pack is damaged; this blob cannot be restored from it',
      );
    }
    await fh.chmod(e.mode & 0o7777);
    if (o.owner) await fh.chown(e.uid, e.gid);
    await fh.close();
    await utimes(tmp, fileTime(e.mtimeMs), fileTime(e.mtimeMs));
    await rename(tmp, path);
  } catch (err) {
    await fh.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw err;
  }
}

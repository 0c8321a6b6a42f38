import { randomBytes } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../observe/logger.js';
import type { Backend } from '../storage/backend.js';
import { BlobIndex } from '../store/blob-index.js';
import type { StoreEncoding } from '../store/encoding.js';
import { blobPath } from '../store/layout.js';
import { extractPack } from '../store/pack-reader.js';
import { PackWriter } from '../store/pack-writer.js';
import type { StoreSweepPlan } from './sweep-plan.js';

export interface RepackResult {
  /** Old packs whose live blobs are now in new packs (and indexed): they may go. */
  done: string[];
  newPacks: number;
  blobs: number;
  storedBytes: number;
  /**
   * Ids of the packs written. Packs are deterministic: a repack of the same blobs as a killed run's repack
   * writes that run's pack again, byte for byte, under the same id (and the same index file id).
   */
  written: Set<string>;
}

/**
 * Writes the live blobs of the repack candidates into new packs, each indexed (pack, then its index file,
 * by PackWriter) before this returns; the old packs are deleted afterwards by the caller. Each candidate's
 * live blobs are unpacked into a scratch directory (each checked against its SHA-1) and added to the writer,
 * which fills new packs across candidates. A candidate that cannot be read (encrypted with no key here,
 * damaged) is left as it is.
 */
export async function repack(
  backend: Backend,
  encoding: StoreEncoding,
  candidates: StoreSweepPlan['repack'],
  spoolDir: string,
  log: Logger,
  signal?: AbortSignal,
): Promise<RepackResult> {
  const result: RepackResult = { done: [], newPacks: 0, blobs: 0, storedBytes: 0, written: new Set() };
  if (candidates.length === 0) return result;
  const work = join(spoolDir, `repack-${randomBytes(4).toString('hex')}`);
  await mkdir(work, { recursive: true, mode: 0o700 });
  // A fresh index: the writer must store these blobs although the store's index knows them (in the old packs).
  const fresh = new BlobIndex();
  const writer = new PackWriter({
    backend,
    index: fresh,
    encoding,
    spoolDir: join(work, 'spool'),
    signal,
  });
  // A candidate is done once every blob of it is in a stored pack: after a cut that followed its last add.
  const durable: string[] = [];
  let unsettled: string[] = [];
  try {
    for (const c of candidates) {
      const packsBefore = writer.stats.packs;
      if (c.pack.encrypted && !encoding.decrypt) {
        log.warn(
          { step: 'sweep', phase: 'repack', pack: c.pack.id },
          `pack ${c.pack.id} is mostly dead but encrypted and no age identity is configured here: not repacked`,
        );
        continue;
      }
      const dir = join(work, 'blobs');
      const live = new Set(c.live);
      try {
        await extractPack({
          backend,
          encoding,
          pack: c.pack,
          dir,
          placeAt: (sha1) => (live.has(sha1) ? [blobPath(sha1)] : []),
          owner: process.getuid?.() === 0,
          signal,
        });
        for (const sha1 of c.live) {
          const at = blobPath(sha1);
          const r = await writer.add(dir, {
            kind: 'blob',
            area: 'filedir',
            path: at,
            sha1,
            size: 0,
            mode: 0,
            uid: 0,
            gid: 0,
            mtimeMs: 0,
            nlink: 1,
            ino: '',
          });
          if (r.status !== 'added' && r.status !== 'known') throw new Error(`blob ${sha1}: ${r.status}`);
        }
      } catch (err) {
        if (signal?.aborted) throw err;
        log.warn(
          { step: 'sweep', phase: 'repack', pack: c.pack.id, err: (err as Error).message },
          `pack ${c.pack.id} could not be repacked (left as it is): ${(err as Error).message}`,
        );
        if (writer.stats.packs > packsBefore) durable.push(...unsettled);
        unsettled = [];
        await writer.abort(); // the open pack's blobs of earlier candidates go too: those are not done
        continue;
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
      if (writer.stats.packs > packsBefore) {
        durable.push(...unsettled);
        unsettled = [];
      }
      unsettled.push(c.id);
      log.debug({ step: 'sweep', phase: 'repack', pack: c.id, blobs: c.live.length }, `repacking ${c.id}`);
    }
    await writer.finish();
    durable.push(...unsettled);
    result.done = durable;
  } finally {
    await writer.abort();
    await rm(work, { recursive: true, force: true });
  }
  for (const e of fresh.entries()) result.written.add(e.packId);
  result.newPacks = writer.stats.packs;
  result.blobs = writer.stats.blobs;
  result.storedBytes = writer.stats.storedBytes;
  return result;
}

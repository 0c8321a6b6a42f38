import type { Logger } from '../observe/logger.js';
import type { Backend } from '../storage/backend.js';
import type { StoreEncoding } from '../store/encoding.js';
import { type IndexedPack, recordsOf } from '../store/index-file.js';
import { indexKey } from '../store/layout.js';
import { readIndexFile, writeIndexFile } from '../store/store-io.js';

/**
 * Removes the packs in `going` from the index before the packs themselves go, so no index ever names a
 * missing pack. An index file naming only such packs is deleted; one that also names packs that stay is
 * first rewritten without them (the new file stored, then the old one deleted: a kill in between leaves
 * both, which name the same packs). Returns how many index files were deleted.
 */
export async function dropIndexEntries(
  backend: Backend,
  encoding: StoreEncoding,
  indexFiles: Map<string, string[]>,
  going: Set<string>,
  log: Logger,
): Promise<number> {
  let deleted = 0;
  for (const [indexId, packs] of indexFiles) {
    if (!packs.some((id) => going.has(id))) continue;
    if (!packs.every((id) => going.has(id))) {
      const keep: IndexedPack[] = (await readIndexFile(backend, encoding, indexId))
        .filter((p) => !going.has(p.pack.id))
        .map((p) => ({ pack: p.pack, blobs: [...recordsOf(p.records)].map((b) => ({ ...b })) }));
      const rewritten = await writeIndexFile(backend, encoding, keep);
      log.debug({ step: 'sweep', phase: 'index', index: indexId, rewritten }, `rewrote index ${indexId}`);
    }
    log.debug({ step: 'sweep', phase: 'index', index: indexId }, `deleting index ${indexId}`);
    await backend.delete(indexKey(indexId));
    deleted++;
  }
  return deleted;
}

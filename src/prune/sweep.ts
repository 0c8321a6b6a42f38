import { tmpdir } from 'node:os';
import type { SnapshotEntry } from '../archive/catalog.js';
import { getCodec } from '../archive/codec.js';
import { encryptionPlan, storeDecrypter } from '../archive/encryption.js';
import type { Config } from '../config/types.js';
import type { Logger } from '../observe/logger.js';
import { type Backend, isLocalBackend } from '../storage/backend.js';
import { framesWanted, type StoreEncoding } from '../store/encoding.js';
import { INDEX_PREFIX, idOfKey, LISTS_PREFIX, listKey, PACKS_PREFIX, packKey } from '../store/layout.js';
import { markKept } from './mark.js';
import { repack } from './repack.js';
import { dropIndexEntries } from './sweep-delete.js';
import { planStoreSweep } from './sweep-plan.js';

/** What prune needs to read and rewrite the store: keys, codec, scratch space. */
export type StoreSweepConfig = Pick<
  Config,
  'compression' | 'compressionLevel' | 'encryption' | 'spoolDir' | 'storeFrames'
> & {
  /** Repack a pack whose live bytes are below this fraction (store/sweep.ts; default 0.5). */
  repackBelow?: number;
};

export interface StoreSweepResult {
  /** Why nothing was deleted (a warning was logged), when the sweep refused. */
  refused?: string;
  deadPacks: number;
  deadBytes: number;
  repackPacks: number;
  repackBytes: number;
  /** New packs the repack wrote. */
  newPacks: number;
  orphanPacks: number;
  orphanBytes: number;
  indexFilesDeleted: number;
  /** Shared blob lists no kept snapshot names, older than the grace period. */
  deadLists: number;
  deadListBytes: number;
}

const EMPTY: StoreSweepResult = {
  deadPacks: 0,
  deadBytes: 0,
  repackPacks: 0,
  repackBytes: 0,
  newPacks: 0,
  orphanPacks: 0,
  orphanBytes: 0,
  indexFilesDeleted: 0,
  deadLists: 0,
  deadListBytes: 0,
};

/**
 * Mark and sweep of the blob store, after the snapshots retention forgot were deleted (under the run lock:
 * no backup runs meanwhile). Mark: every kept snapshot's blob list. Sweep, in an order where a kill at any
 * point leaves every kept snapshot restorable and no index naming a missing pack: (1) live blobs of mostly
 * dead packs into new packs, indexed; (2) the index files of the packs that go; (3) those packs; (4) packs
 * no index names, once older than the grace period. A dry run stops after the plan.
 */
export async function sweepStore(
  backend: Backend,
  listed: SnapshotEntry[],
  o: {
    gone: Set<string>;
    cfg?: StoreSweepConfig;
    dryRun: boolean;
    now: Date;
    graceMs: number;
    log: Logger;
    signal?: AbortSignal;
  },
): Promise<StoreSweepResult | undefined> {
  const { log } = o;
  const [packs, indexes] = await Promise.all([backend.list(PACKS_PREFIX), backend.list(INDEX_PREFIX)]);
  if (packs.length === 0 && indexes.length === 0) return undefined; // no store at this target
  const cfg = o.cfg ?? { compression: 'zstd', spoolDir: tmpdir() };
  const refuse = (reason: string): StoreSweepResult => {
    log.warn(
      { step: 'sweep', refused: reason },
      `store sweep refused, no pack deleted: ${reason}. Run \`verify --all\` to see which snapshots are damaged`,
    );
    return { ...EMPTY, refused: reason };
  };
  const mark = await markKept(backend, listed, o.gone, cfg.encryption, log);
  if (!mark.ok) return refuse(mark.reason);
  const decrypt = storeDecrypter(cfg.encryption, 'store');
  const plan = await encryptionPlan(cfg.encryption);
  const encoding: StoreEncoding = {
    codec: getCodec(cfg.compression),
    level: cfg.compressionLevel,
    encrypt: plan ? () => plan.stage() : undefined,
    decrypt,
    frames: framesWanted(cfg.storeFrames, isLocalBackend(backend)),
  };
  let outcome: Awaited<ReturnType<typeof planStoreSweep>>;
  try {
    outcome = await planStoreSweep(backend, encoding, mark.live, {
      now: o.now,
      graceMs: o.graceMs,
      repackBelow: cfg.repackBelow,
    });
  } catch (err) {
    return refuse(`the store's index cannot be read: ${(err as Error).message}`);
  }
  if (!outcome.ok) return refuse(outcome.reason);
  const p = outcome.plan;
  // Shared lists no kept snapshot names; a young one may be a running backup's, not yet in a manifest.
  const deadLists = (await backend.list(LISTS_PREFIX)).filter((o2) => {
    const id = idOfKey(o2.key);
    return (
      id !== null &&
      o2.key === listKey(id) &&
      !mark.bases.has(id) &&
      o.now.getTime() - o2.modified.getTime() >= o.graceMs
    );
  });
  const result: StoreSweepResult = {
    ...EMPTY,
    deadLists: deadLists.length,
    deadListBytes: deadLists.reduce((n, x) => n + x.size, 0),
    deadPacks: p.dead.length,
    deadBytes: p.dead.reduce((n, d) => n + d.storedSize, 0),
    repackPacks: p.repack.length,
    repackBytes: p.repack.reduce((n, r) => n + r.pack.storedSize, 0),
    orphanPacks: p.orphans.length,
    orphanBytes: p.orphans.reduce((n, x) => n + x.size, 0),
  };
  log.info(
    {
      step: 'sweep',
      phase: 'plan',
      dryRun: o.dryRun,
      deadPacks: result.deadPacks,
      deadBytes: result.deadBytes,
      repackPacks: result.repackPacks,
      repackBytes: result.repackBytes,
      repackDeferred: p.repackDeferred,
      orphanPacks: result.orphanPacks,
      orphanBytes: result.orphanBytes,
      youngOrphans: p.youngOrphans,
      deadLists: result.deadLists,
      deadListBytes: result.deadListBytes,
    },
    `store: ${result.deadPacks} dead pack(s), ${result.repackPacks} to repack, ${result.orphanPacks} unindexed, ${result.deadLists} unused shared list(s)${o.dryRun ? ' (dry run)' : ''}`,
  );
  if (o.dryRun) return result;

  const r = await repack(backend, encoding, p.repack, cfg.spoolDir, log, o.signal);
  result.newPacks = r.newPacks;
  result.repackPacks = r.done.length;
  const repacked = new Set(r.done);
  result.repackBytes = p.repack.filter((c) => repacked.has(c.id)).reduce((n, c) => n + c.pack.storedSize, 0);
  log.info(
    { step: 'sweep', phase: 'repacked', packs: r.done.length, newPacks: r.newPacks, blobs: r.blobs },
    `repacked ${r.done.length} pack(s) into ${r.newPacks} new one(s)`,
  );
  // A pack the repack has just (re)written holds live blobs now, whatever the plan said of its old copy.
  const going = [...p.dead.map((d) => d.id), ...r.done].filter((id) => !r.written.has(id));
  result.indexFilesDeleted = await dropIndexEntries(backend, encoding, p.indexFiles, new Set(going), log);
  for (const id of going) await deletePack(backend, id, 'pack', log);
  for (const orphan of p.orphans)
    if (!r.written.has(orphan.id)) await deletePack(backend, orphan.id, 'orphan', log);
  for (const l of deadLists) {
    log.debug({ step: 'sweep', phase: 'list', key: l.key }, `deleting shared list ${l.key}`);
    await backend.delete(l.key);
  }
  log.info(
    { step: 'sweep', phase: 'done', ...result },
    `store swept: ${going.length} pack(s), ${result.orphanPacks} unindexed pack(s) and ${result.deadLists} unused shared list(s) deleted`,
  );
  return result;
}

async function deletePack(backend: Backend, id: string, phase: string, log: Logger): Promise<void> {
  log.debug({ step: 'sweep', phase, pack: id }, `deleting pack ${id}`);
  await backend.delete(packKey(id));
}

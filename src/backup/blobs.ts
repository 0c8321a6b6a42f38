import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { storeDecrypter } from '../archive/encryption.js';
import type { ManifestBlobs } from '../archive/manifest.js';
import { SidecarError } from '../common/errors.js';
import { fileChunks } from '../common/file-chunks.js';
import { isLocalBackend } from '../storage/backend.js';
import { spoolError } from '../storage/spool-error.js';
import { BlobIndex } from '../store/blob-index.js';
import { formatBlobLine, formatDirLine } from '../store/blob-list.js';
import { framesWanted, type StoreEncoding } from '../store/encoding.js';
import { IndexCache } from '../store/index-cache.js';
import { type LeafTable, leafOf } from '../store/leaf-table.js';
import type { ListedBlob } from '../store/listing.js';
import { PackWriter } from '../store/pack-writer.js';
import { SharedInodes } from '../store/shared-inodes.js';
import { type SnapshotListResult, writeSnapshotList } from '../store/snapshot-list.js';
import { loadIndex } from '../store/store-io.js';
import { PreListing, relist, scanWindow, sinceMarginFor, windowTarArgs } from './blob-window.js';
import type { BackupRun, BlobSession, BlobVolume } from './context.js';
import { keepBase, loadKeptBase, newKeptPath, readableAs } from './list-base-cache.js';
import { ListingDraft, listingDir, loadListing } from './listing-cache.js';
import { makeSpoolDir } from './steps.js';

/** A blob list is text, not a tar: its name ends in the compressor's own extension. */
const LIST_EXTENSION: Record<BackupRun['codec']['name'], string> = { zstd: '.zst', gzip: '.gz', none: '' };

/** The state volume's copies of the store's index files, one directory per target. */
function storeCache(stateDir: string, location: string): IndexCache {
  const key = createHash('sha256').update(location).digest('hex').slice(0, 16);
  return new IndexCache(join(stateDir, 'store-cache', key));
}

/**
 * Which volumes keep their blobs in the store (BACKUP_INCREMENTAL=auto: those the sidecar can read as a
 * directory and that hold a `filedir/`), and the store's index, loaded before anything stops. Undefined when
 * none does.
 */
export async function openStore(
  run: BackupRun,
  dirs: Map<string, string | null>,
): Promise<BlobSession | undefined> {
  const { config, backend, log, signal } = run.ctx;
  if (config.incremental === 'off') return undefined;
  const volumes = new Map<string, BlobVolume>();
  const dataroot = run.mp.site.moodle?.dataroot?.volume;
  for (const v of run.mp.tarVolumes) {
    const dir = dirs.get(v.name);
    if (dir && (await isDir(join(dir, 'filedir'))))
      volumes.set(v.name, {
        v,
        dir,
        links: new SharedInodes(dir),
        beforeMs: 0,
        added: { blobs: 0, bytes: 0, packBytes: 0 },
      });
    else if (dataroot?.name === v.name) {
      // The dataroot a user expects to be incremental: say why it is read whole.
      const why = !dir
        ? 'the sidecar cannot read it as a directory (mount it at /backup/<name>)'
        : dataroot.subpath
          ? `the dataroot is ${dataroot.subpath}/ inside the volume, and only a filedir/ at the top is kept in the store`
          : 'it has no filedir/ yet';
      log.info({ step: 'store', volume: v.short }, `${v.short}: saved whole, not incrementally: ${why}`);
    }
  }
  if (volumes.size === 0) return undefined;
  const decrypt = storeDecrypter(config.encryption, 'store index');
  const encrypt = run.encryption
    ? () => (run.encryption as NonNullable<BackupRun['encryption']>).stage()
    : undefined;
  const encoding: StoreEncoding = {
    codec: run.codec,
    level: config.compressionLevel,
    encrypt,
    decrypt,
    frames: framesWanted(config.storeFrames, isLocalBackend(backend)),
  };
  const t0 = Date.now();
  const cache = storeCache(config.stateDir, backend.location);
  let unreadable = 0;
  // Only whether a blob is stored matters here, never where: the hashes alone.
  const index = await loadIndex(backend, encoding, {
    cache,
    unreadable: () => unreadable++,
    hashesOnly: true,
  });
  if (unreadable > 0) {
    log.warn(
      { step: 'store', unreadable },
      `${unreadable} index file(s) of the store are encrypted and not in this sidecar's cache (a new host, or a lost state volume): their files are stored again. Give the sidecar BACKUP_AGE_IDENTITY_FILE to reuse them`,
    );
  }
  log.info(
    { step: 'store', blobs: index.size, packs: index.packCount, ms: Date.now() - t0 },
    `store index: ${index.size} blob(s) in ${index.packCount} pack(s)`,
  );
  await makeSpoolDir(run.spoolDir);
  const spoolDir = join(run.spoolDir, 'packs');
  const writer = new PackWriter({
    backend,
    index,
    encoding,
    cache,
    spoolDir,
    background: true,
    signal,
  });
  return {
    writer,
    encoding,
    volumes,
    spoolDir,
    index,
    listings: listingDir(config.stateDir, backend.location),
  };
}

/**
 * Before the stack stops: every blob the store lacks is read once and packed. Blobs never change, so what is
 * stored now stays right; inside the stop window only the blobs that appeared since are read.
 */
export async function storeBefore(run: BackupRun, s: BlobSession): Promise<void> {
  const { log, signal } = run.ctx;
  // Online mode stops nothing: this is its first look, and the read's second one lists what changed since.
  const when = run.plan.actions.length > 0 ? ' before the stop' : '';
  for (const bv of [...s.volumes.values()]) {
    const t0 = Date.now();
    // The last snapshot's listing, when it is still stored: only the directories changed since are listed.
    // Keyed by the Docker volume's own name: another site's volume of the same compose name is not this one.
    const prev = await loadListing(s.listings, bv.v.name, run.ctx.backend);
    // What this listing saw is kept, so the window lists again only the directories that changed since.
    const pre = new PreListing(
      join(run.spoolDir, `${bv.v.short}.listed`),
      await sinceMarginFor(bv.dir),
      bv.links,
    );
    const added = await counted(s, bv, async () => {
      try {
        if (!prev) await pre.stamp(bv.dir);
        const blobs = prev ? pre.since(bv.dir, prev, signal) : pre.blobs(bv.dir, signal);
        await s.writer.addAll(bv.dir, blobs, async (l, r) => {
          if (r.status === 'added') bv.progress?.stored(l);
          if (r.status === 'mismatch') warnMismatch(run, bv, l, r);
          await pre.record(l, r);
        });
        await pre.finish();
      } catch (err) {
        pre.abort();
        throw err;
      }
    });
    bv.pre = pre;
    bv.beforeMs = Date.now() - t0;
    bv.progress?.done();
    const since = prev ? { previous: prev.snapshot, changedDirs: pre.changedDirs, reused: pre.reused } : {};
    log.info(
      {
        step: 'store',
        phase: 'before-stop',
        volume: bv.v.short,
        listed: pre.count,
        ...since,
        ...added,
        ms: bv.beforeMs,
      },
      prev
        ? `${bv.v.short}: ${pre.count} blob(s), ${pre.changedDirs} director(ies) changed since ${prev.snapshot} listed again, ${added.blobs} new stored${when}`
        : `${bv.v.short}: ${pre.count} blob(s) listed, ${added.blobs} new stored${when}`,
    );
  }
}

/** After the commit: each volume's listing becomes the next backup's starting point (a failure only costs time). */
export async function saveListings(run: BackupRun, snapshot: string): Promise<void> {
  for (const bv of run.store?.volumes.values() ?? []) {
    const base = bv.list?.blobs.base;
    const kept = bv.list?.newBase;
    const readable = listsReadableAs(run);
    // A text is written only when its run's lists may be diffed against (readable not null).
    const linesPath = kept?.linesPath;
    const last = bv.list?.last;
    const newDelta = bv.list?.newDelta;
    // A new base, or this list by its text with the same base (said again by the next run if unchanged).
    if (base && readable !== null && run.store && ((kept && linesPath) || bv.list?.keepLast))
      await keepBase(
        run.store.listings,
        bv.v.name,
        base,
        kept && linesPath ? { linesPath, textSha256: kept.textSha256 } : undefined,
        last,
        readable,
      ).catch(async (err: unknown) => {
        run.ctx.log.warn(
          { step: 'store', volume: bv.v.short, err },
          `${bv.v.short}: could not keep this snapshot's blob list in the state directory (the next backup writes it whole): ${(err as Error).message}`,
        );
        if (linesPath) await rm(linesPath, { force: true });
        if (newDelta) await rm(newDelta, { force: true });
      });
    const next = bv.next;
    if (!next) continue;
    bv.next = undefined;
    await next.draft
      .install(snapshot, next.sinceMs, next.stamps, next.mixed, next.totals)
      .catch((err: unknown) => {
        run.ctx.log.warn(
          { step: 'store', volume: bv.v.short, err },
          `${bv.v.short}: could not keep this snapshot's listing in the state directory (the next backup lists every file): ${(err as Error).message}`,
        );
        return next.draft.discard();
      });
  }
}

/** Who reads this run's lists (list-base-cache.ts readableAs). */
function listsReadableAs(run: BackupRun): string | null {
  return readableAs(run.codec.name, run.encryption?.recipients ?? null, run.encryption !== null);
}

/** The run failed: the drafts go, the previous listings stay. */
export async function discardListings(run: BackupRun): Promise<void> {
  for (const bv of run.store?.volumes.values() ?? []) {
    await bv.next?.draft.discard().catch(() => undefined);
    const linesPath = bv.list?.newBase?.linesPath;
    if (linesPath) await rm(linesPath, { force: true });
    if (bv.list?.newDelta) await rm(bv.list.newDelta, { force: true });
  }
}

/** Runs `fn`, cuts the open pack, and adds what the writer stored meanwhile to the volume's counts. */
async function counted(
  s: BlobSession,
  bv: BlobVolume,
  fn: () => Promise<void>,
): Promise<BlobVolume['added']> {
  const b = { ...s.writer.stats };
  try {
    await fn();
    await s.writer.finish();
  } catch (err) {
    throw spoolFull(err, s.spoolDir);
  }
  const a = s.writer.stats;
  const d = {
    blobs: a.blobs - b.blobs,
    bytes: a.readBytes - b.readBytes,
    packBytes: a.storedBytes - b.storedBytes,
  };
  bv.added = {
    blobs: bv.added.blobs + d.blobs,
    bytes: bv.added.bytes + d.bytes,
    packBytes: bv.added.packBytes + d.packBytes,
  };
  return d;
}

/** A file of list lines, read for a pass that lets each chunk go (a reused buffer) or one that may keep it. */
function linesOf(path: string, transient: boolean): AsyncIterable<Buffer> {
  return transient ? fileChunks(path) : createReadStream(path, { highWaterMark: 1 << 20 });
}

function listFile(run: BackupRun, bv: BlobVolume): { file: string; path: string } {
  const file = `${bv.v.short}.blobs${LIST_EXTENSION[run.codec.name]}${run.encryption ? '.age' : ''}`;
  return { file, path: join(run.spoolDir, file) };
}

/**
 * Inside the window (stack stopped or paused; online mode: live, a second look): only the leaf directories
 * that changed since the listing before are listed (backup/blob-window.ts), and the new blobs there stored.
 * Returns the GNU tar options that leave exactly the listed files and the leaf directories that hold only
 * them out of the volume's tarball. The snapshot's lines (the first listing's for the rest, and the new
 * ones) go to the listing draft; the blob list itself is written from them once the stack runs again
 * (writeBlobLists): compressing 37,000 lines and 28,000 directory lines took CPU from the database's read in
 * the window. A leaf directory whose name is not UTF-8 is never listed again (find could not be given its
 * name): no line can name what it holds, so tar walks it whole.
 */
export async function storeInside(run: BackupRun, s: BlobSession, bv: BlobVolume): Promise<string[]> {
  const t0 = Date.now();
  const pre = bv.pre;
  // storeBefore lists every volume of the store before the window; without it nothing here is known.
  if (!pre) throw new Error(`${bv.v.short}: the window's look came before any listing`);
  const scan = await scanWindow(bv.dir, pre);
  const found = await relist(
    bv.dir,
    scan.changed,
    pre.mixed,
    join(run.spoolDir, `${bv.v.short}.relisted`),
    bv.links,
  );
  const relisted = found.count;
  const drop = scan.stale.size > 0 ? scan.stale : undefined;
  // The final lines are also the next backup's starting point, kept once this snapshot is committed; the
  // first listing's whole, when nothing is dropped, copied by the kernel.
  const draft = await ListingDraft.open(s.listings, bv.v.name, drop ? undefined : pre.file);
  const mismatches = pre.mismatches.filter((m) => !scan.stale.has(leafOf(m.path)));
  const totals = { count: drop ? 0 : pre.count, bytes: drop ? 0 : pre.bytes, mismatches };
  try {
    if (drop)
      for await (const chunk of pre.replay(drop)) {
        await draft.add(chunk.text);
        totals.count += chunk.count;
        totals.bytes += chunk.bytes;
      }
    const added = await counted(s, bv, () =>
      s.writer.addAll(bv.dir, found.blobs(), async (l, r) => {
        if (r.status === 'vanished') return;
        if (r.status === 'added') bv.progress?.stored(l);
        if (r.status === 'mismatch') {
          mismatches.push({ path: l.path, claimed: r.claimed, actual: r.actual });
          warnMismatch(run, bv, l, r);
        }
        totals.count++;
        totals.bytes += l.size;
        await draft.add(formatBlobLine({ ...l, sha1: r.sha1 }));
      }),
    );
    await draft.seal();
    bv.progress?.done();
    const insideMs = Date.now() - t0;
    run.ctx.log.info(
      {
        step: 'store',
        phase: 'inside',
        volume: bv.v.short,
        listed: totals.count,
        changedDirs: scan.changed.size,
        relisted,
        added: added.blobs,
        addedBytes: added.bytes,
        ms: insideMs,
      },
      `${bv.v.short}: ${totals.count} blob(s), ${scan.changed.size} changed director(ies) listed again, ${added.blobs} stored ${run.plan.actions.length > 0 ? 'inside the window' : 'since the first look'}`,
    );
    const excludeFile = join(run.spoolDir, `${bv.v.short}.blob-dirs`);
    const args = await windowTarArgs(bv.dir, scan, pre.mixed, excludeFile, bv.links);
    bv.next = { draft, sinceMs: scan.sinceMs, stamps: scan.stamps, mixed: pre.mixed, totals };
    // Every line the last snapshot's, no directory changed before or inside the window: likely its very text.
    const likelySame = !drop && pre.reused === pre.count && pre.changedDirs === 0 && scan.changed.size === 0;
    bv.listLater = () =>
      writeListFrom(run, s, bv, { draft, stamps: scan.stamps, totals, insideMs, likelySame });
    return args;
  } catch (err) {
    await draft.discard();
    throw spoolFull(err, run.spoolDir);
  }
}

/**
 * Once the window's packs are stored, nothing more is: the store's index goes before the lists are written
 * (a million blobs' index is 20+ MB; with it kept, a 1st backup of them peaked 20 MB higher writing them).
 */
export function releaseStore(run: BackupRun): void {
  const s = run.store;
  if (!s) return;
  s.writer.release();
  s.index = new BlobIndex();
}

/**
 * After the window: each blob list that storeChanged left for then, written from its listing draft's lines
 * and the window's directory stamps, and named in the volume's manifest entry.
 */
export async function writeBlobLists(run: BackupRun): Promise<void> {
  for (const bv of run.store?.volumes.values() ?? []) {
    const later = bv.listLater;
    bv.listLater = undefined;
    if (later) await later();
    if (bv.list && bv.entry) bv.entry.blobs = bv.list.blobs;
  }
}

async function writeListFrom(
  run: BackupRun,
  s: BlobSession,
  bv: BlobVolume,
  w: {
    draft: ListingDraft;
    stamps: LeafTable;
    totals: { count: number; bytes: number; mismatches: ManifestBlobs['mismatches'] };
    insideMs: number;
    likelySame?: boolean;
  },
): Promise<void> {
  const { linesPath } = w.draft;
  const { stamps } = w;
  // The blob lines, then a directory line after every one of them (a by-hand restore sets their times last).
  async function* text(transient: boolean): AsyncGenerator<Buffer | string> {
    yield* linesOf(linesPath, transient);
    let dirLines: string[] = [];
    for (const e of stamps.each()) {
      if (!e.hasAttrs) continue;
      dirLines.push(formatDirLine(e));
      if (dirLines.length < 1024) continue;
      yield dirLines.join('');
      dirLines = [];
    }
    if (dirLines.length > 0) yield dirLines.join('');
  }
  await writeList(run, s, bv, { text, ...w.totals, insideMs: w.insideMs, likelySame: w.likelySame });
}

/**
 * The snapshot's blob list from its whole text: the difference from the shared base the last snapshot used,
 * or a new base (store/snapshot-list.ts); named in the volume's manifest entry by writeBlobLists.
 */
async function writeList(
  run: BackupRun,
  s: BlobSession,
  bv: BlobVolume,
  w: {
    text: (transient: boolean) => AsyncIterable<Buffer | string>;
    count: number;
    bytes: number;
    mismatches: ManifestBlobs['mismatches'];
    insideMs: number;
    likelySame?: boolean;
  },
): Promise<void> {
  const { file, path } = listFile(run, bv);
  const volume = bv.v.name;
  const readable = listsReadableAs(run);
  // A passphrase run's lists are never diffed against (readableAs): no text of its base is kept.
  const baseLinesPath = readable === null ? undefined : await newKeptPath(s.listings, volume, 'lines');
  const deltaLinesPath = readable === null ? undefined : await newKeptPath(s.listings, volume, 'delta');
  try {
    const r = await writeSnapshotList({
      backend: run.ctx.backend,
      encoding: s.encoding,
      text: w.text,
      count: w.count,
      bytes: w.bytes,
      path,
      basePath: join(run.spoolDir, `${bv.v.short}.base`),
      baseLinesPath,
      deltaLinesPath,
      previous: await loadKeptBase(s.listings, volume, readable),
      likelySame: w.likelySame,
    });
    if (!r.newBase && baseLinesPath) await rm(baseLinesPath, { force: true });
    const newDelta = r.last?.deltaPath === deltaLinesPath ? deltaLinesPath : undefined;
    if (deltaLinesPath && !newDelta) await rm(deltaLinesPath, { force: true });
    finishList(bv, { file, path }, r, w.mismatches, w.insideMs, newDelta);
  } catch (err) {
    if (baseLinesPath) await rm(baseLinesPath, { force: true });
    if (deltaLinesPath) await rm(deltaLinesPath, { force: true });
    throw spoolFull(err, run.spoolDir);
  }
}

/** The list's manifest entry, once it is written. */
function finishList(
  bv: BlobVolume,
  at: { file: string; path: string },
  r: SnapshotListResult,
  mismatches: ManifestBlobs['mismatches'],
  insideMs: number,
  newDelta: string | undefined,
): void {
  bv.list = {
    ...at,
    ...(r.newBase ? { newBase: r.newBase } : {}),
    ...(r.last ? { last: r.last, keepLast: !r.again } : {}),
    ...(newDelta ? { newDelta } : {}),
    blobs: {
      file: at.file,
      sha256: r.summary.sha256,
      storedBytes: r.summary.storedBytes,
      count: r.summary.count,
      bytes: r.summary.bytes,
      added: bv.added.blobs,
      addedBytes: bv.added.bytes,
      packBytes: bv.added.packBytes,
      mismatches,
      beforeMs: bv.beforeMs,
      insideMs,
      base: r.base,
    },
  };
}

function warnMismatch(run: BackupRun, bv: BlobVolume, l: ListedBlob, r: { actual: string }): void {
  run.ctx.log.warn(
    { step: 'store', volume: bv.v.short, path: l.path, actual: r.actual },
    `${bv.v.short}: ${l.path} does not hold the content its name claims (SHA-1 ${r.actual}): Moodle's copy is corrupt; saved as it is`,
  );
}

/** Packs and blob lists are built in the spool: a full or read-only disk there is the spool's, named as such. */
function spoolFull(err: unknown, dir: string): unknown {
  const code = (err as NodeJS.ErrnoException)?.code ?? '';
  if (['ENOSPC', 'EDQUOT', 'EROFS'].includes(code)) return spoolError(err, dir);
  if (err instanceof SidecarError || (err as Error)?.name === 'AbortError') return err;
  // The compressor writes a pack's spool file itself: its disk full is a message, not an errno.
  const message = (err as Error)?.message ?? String(err);
  const full = /No space left on device|Disk quota exceeded|Read-only file system/.exec(message);
  if (full) return spoolError(Object.assign(new Error(message), { code: 'ENOSPC' }), dir);
  // A tool of the store's pipelines failed (tar, zstd, openssl killed or broken): the run failed to store.
  return new SidecarError('STORAGE_FAILED', `storing the dataroot's files failed: ${message}`, undefined, {
    cause: err,
  });
}

async function isDir(path: string): Promise<boolean> {
  return (await stat(path).catch(() => null))?.isDirectory() ?? false;
}

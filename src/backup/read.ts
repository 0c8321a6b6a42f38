import { join } from 'node:path';
import { AGE_EXTENSION } from '../archive/encryption.js';
import type { ManifestVolume } from '../archive/manifest.js';
import { throwFirstCause } from '../common/errors.js';
import { dumpLabel, ProgressBoard } from '../observe/progress.js';
import { progressTotals } from '../observe/size-scan.js';
import { quiesce } from '../stack/quiesce.js';
import { isBlobPath } from '../store/layout.js';
import { volumeDir } from '../volume/mount-dir.js';
import { storeInside } from './blobs.js';
import type { BackupRun } from './context.js';
import { dumpStep } from './dump-step.js';
import { fingerprintNow, reuseArchive } from './reuse.js';
import { backendSink, makeSpoolDir, type Sink, spoolFile, spoolSink } from './steps.js';
import { type ArchiveDest, manifestVolume, streamVolume } from './stream.js';

/** Where an archive goes: its spool file (remote targets), or straight to the backend. */
function sinkFor(run: BackupRun, file: string): Sink {
  const { backend } = run.ctx;
  return run.spool
    ? spoolSink(join(run.spoolDir, file))
    : backendSink(backend, `${run.id}/${file}`, run.state);
}

/** sinkFor, and the file a compressor may write itself when the archive lands in a local file. */
function destFor(run: BackupRun, file: string): ArchiveDest {
  const { backend } = run.ctx;
  const sink = sinkFor(run, file);
  if (run.spool) return { sink, file: () => spoolFile(join(run.spoolDir, file)) };
  const create = backend.createFile?.bind(backend);
  return create ? { sink, file: () => create(`${run.id}/${file}`) } : { sink };
}

/** Online mode: the database dump, while maintenance mode is on (turned off by the caller right after). */
export async function dumpDatabase(run: BackupRun): Promise<boolean> {
  const { docker, config, log, signal } = run.ctx;
  if (!run.mp.dump) return false;
  if (run.spool) await makeSpoolDir(run.spoolDir);
  // A phase of its own on the terminal: the volumes' totals are scanned after it, outside maintenance mode.
  const label = dumpLabel(run.mp.dump.db.container.service);
  const progress = run.dumpTotal ? new ProgressBoard({ [label]: run.dumpTotal }).item(label) : undefined;
  run.database = await dumpStep(
    docker,
    run.mp.dump,
    run.codec,
    config.compressionLevel,
    run.encryption,
    (file) => sinkFor(run, file),
    log,
    signal,
    progress,
  );
  return true;
}

/**
 * Each volume's directory when the sidecar can read it (the mount path), and the progress line's totals.
 * Both before anything stops: BACKUP_READ_PATH=mount with an unreachable volume fails here, and a size scan
 * must not add downtime.
 */
export async function prepareReads(
  run: BackupRun,
): Promise<{ dirs: Map<string, string | null>; board: ProgressBoard | undefined }> {
  const { docker, config } = run.ctx;
  const dirs = new Map<string, string | null>();
  for (const v of run.mp.tarVolumes)
    dirs.set(v.name, await volumeDir(docker, v.name, run.self, config.readPath, 'read'));
  const board = ProgressBoard.enabled()
    ? new ProgressBoard(
        await progressTotals(
          run.mp.tarVolumes.map((v) => ({ short: v.short, dir: dirs.get(v.name) })),
          run.previous,
          // The blobs of an incremental volume go to the store, not into its tarball.
          config.incremental === 'off' ? undefined : isBlobPath,
        ),
      )
    : undefined;
  return { dirs, board };
}

/**
 * Quiesces the stack, runs `read`, and resumes the stack whatever happened (the closure that restarts it is
 * taken on the same line that stops it); `afterResume` runs right after (maintenance mode off).
 */
export async function whileQuiesced(
  run: BackupRun,
  read: () => Promise<void>,
  afterResume: () => Promise<void>,
): Promise<void> {
  const { docker, config, log } = run.ctx;
  const tq = Date.now();
  const resume = await quiesce(docker, run.plan, {
    stopTimeoutSeconds: config.stopTimeoutSeconds,
    state: run.state,
    log,
  });
  run.timings.quiesceMs = Date.now() - tq;
  try {
    await read();
  } finally {
    await resume();
    const downtimeMs = run.plan.actions.length > 0 ? Date.now() - tq : 0;
    run.timings.downtimeMs = downtimeMs;
    log.info({ step: 'resumed', downtimeMs }, `stack resumed after ${(downtimeMs / 1000).toFixed(1)} s`);
    await afterResume();
  }
}

/** Streams every file volume into its archive, one after the other (stack quiesced). */
export async function readVolumes(
  run: BackupRun,
  dirs: Map<string, string | null>,
  board: ProgressBoard | undefined,
): Promise<void> {
  const tr = Date.now();
  if (run.spool) await makeSpoolDir(run.spoolDir);
  // Each dataroot's listing inside the window starts at once, beside the reads of the volumes before it
  // (the database's): find mostly waits on the file system. One at a time among themselves (one writer).
  const inside = new Map<string, Promise<string[]>>();
  let chain: Promise<unknown> = Promise.resolve();
  for (const v of run.mp.tarVolumes) {
    const bv = run.store?.volumes.get(v.name);
    const store = run.store;
    if (!store || !bv) continue;
    // The few blobs that appeared since the listing before: no progress line of their own.
    const p = chain.then(() => storeInside(run, store, bv));
    p.catch(() => undefined); // awaited in the loop below
    inside.set(v.name, p);
    chain = p.catch(() => undefined);
  }
  let read = false;
  try {
    await readEach(run, dirs, board, inside);
    read = true;
  } finally {
    await Promise.allSettled(inside.values()); // nothing of the store runs on after a failed read
    // Hashing and syncing the archives the compressor wrote need not keep the stack down: that runs beside
    // the resume (awaited by finishArchives). After a failed read the files are removed instead.
    const unfinished = run.unfinished.splice(0);
    run.finishing = read ? finishEach(run, unfinished) : discardEach(unfinished);
    run.finishing.catch(() => undefined);
  }
  run.timings.readMs = Date.now() - tr;
}

/** After the window: each archive the compressor wrote is hashed and published; its entry gets both. */
export async function finishArchives(run: BackupRun): Promise<void> {
  await run.finishing;
}

async function finishEach(run: BackupRun, unfinished: BackupRun['unfinished']): Promise<void> {
  const settled = await Promise.allSettled(
    unfinished.map(async ({ entry, later }) => {
      const t0 = Date.now();
      const { storedBytes, sha256 } = await later.finish();
      entry.storedBytes = storedBytes;
      entry.sha256 = sha256;
      run.ctx.log.info(
        { step: 'stored', volume: entry.name, file: entry.file, storedBytes, ms: Date.now() - t0 },
        `${entry.name}: ${entry.file} hashed and written to disk`,
      );
    }),
  );
  throwFirstCause(settled);
}

async function discardEach(unfinished: BackupRun['unfinished']): Promise<void> {
  await Promise.allSettled(unfinished.map(({ later }) => later.discard()));
}

async function readEach(
  run: BackupRun,
  dirs: Map<string, string | null>,
  board: ProgressBoard | undefined,
  inside: Map<string, Promise<string[]>>,
): Promise<void> {
  const { docker, config, log, signal } = run.ctx;
  for (const v of run.mp.tarVolumes) {
    signal?.throwIfAborted();
    const excludes = run.mp.excludes.get(v.name) ?? { rules: [], source: 'none' };
    // Blobs first: the tarball then leaves out exactly the files the blob list holds.
    const bv = run.store?.volumes.get(v.name);
    const blobArgs = await inside.get(v.name);
    const file = `${v.short}${run.codec.extension}${run.encryption ? AGE_EXTENSION : ''}`;
    // Listed now, inside the window, so a change made right before the stop is seen.
    const fingerprint = await fingerprintNow(run, v, dirs.get(v.name), excludes);
    const reused = await reuseArchive(run, v, file, fingerprint, excludes);
    if (reused) {
      run.volumes.push(reused);
      board?.settle(v.short, reused.rawBytes);
      continue;
    }
    const encryption = run.encryption;
    const r = await streamVolume(
      docker,
      v,
      run.helperImage,
      {
        codec: run.codec,
        level: config.compressionLevel,
        after: () => (encryption ? [encryption.stage()] : []),
        plain: !encryption,
      },
      destFor(run, file),
      signal,
      board?.volume(v.short),
      excludes,
      dirs.get(v.name),
      (message) => log.warn({ step: 'read', volume: v.short }, message),
      blobArgs,
    );
    const entry: ManifestVolume = {
      ...manifestVolume(v, file, r, excludes),
      ...(fingerprint ? { fingerprint } : {}),
    };
    run.volumes.push(entry);
    if (r.later) run.unfinished.push({ entry, later: r.later });
    // Its blob list, written once the stack runs again (writeBlobLists), is named there.
    if (blobArgs && bv) bv.entry = entry;
    log.info(
      {
        step: 'read',
        volume: v.short,
        rawBytes: r.rawBytes,
        // Written by the compressor itself: its size is known once finished (the 'stored' line has it).
        ...(r.later ? {} : { storedBytes: r.storedBytes }),
        ms: r.ms,
        readPath: r.via,
        rawViaNode: r.viaNode,
        ...(r.later ? { direct: true } : {}),
      },
      `read ${v.short}`,
    );
  }
}

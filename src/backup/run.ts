import { rm } from 'node:fs/promises';
import type { Manifest } from '../archive/manifest.js';
import { runHooks } from '../stack/hooks.js';
import { StoreProgress } from './blob-progress.js';
import {
  discardListings,
  openStore,
  releaseStore,
  saveListings,
  storeBefore,
  writeBlobLists,
} from './blobs.js';
import { commitManifest, uploadBlobLists, uploadSpooled } from './commit.js';
import type { BackupContext, BackupRun } from './context.js';
import { prepareRun } from './prepare.js';
import { dumpDatabase, finishArchives, prepareReads, readVolumes, whileQuiesced } from './read.js';
import { findReusable } from './reuse.js';
import { discardPartial } from './steps.js';
import { maintenanceOrStop } from './stop-instead.js';

/**
 * The backup pipeline, top to bottom. Every exit path (error, abort) resumes the stack, turns maintenance
 * mode off and runs the post hooks; a crash is covered by the state file (recover/run.ts). Nothing is
 * committed until the manifest is written, last.
 */
export async function runBackup(ctx: BackupContext): Promise<Manifest> {
  const run = await prepareRun(ctx);
  try {
    // Maintenance first, so pre hooks act on a quiet site; a failing hook turns it off again (finally).
    await quietSite(run);
    await runHooks(ctx.docker, run.hooks.pre, ctx.log);
    // Online mode: maintenance mode only while the dump runs; the file volumes are read live afterwards.
    if (await dumpDatabase(run)) await maintenanceOff(run);
    const { dirs, board } = await prepareReads(run);
    // Moodle's blobs never change: those new to the store are stored while the site still runs. In online
    // mode too: then the read's second look lists again only the leaf directories that changed since.
    run.store = await openStore(run, dirs);
    // Which earlier archives may stand in for an unchanged volume (checked again inside the window).
    run.reuse = await findReusable(run, dirs);
    if (run.store) {
      const lines = StoreProgress.start(run.store, [...run.store.volumes.values()]);
      await storeBefore(run, run.store).finally(() => lines?.finish());
      // Those packs used the age streams opened ahead; open the window's again (archives, lists, a pack each).
      await run.encryption?.prepare(run.mp.tarVolumes.length + 3 * run.store.volumes.size);
    }
    await whileQuiesced(
      run,
      () => readVolumes(run, dirs, board),
      () => maintenanceOff(run),
    );
    await finishArchives(run);
    releaseStore(run);
    await writeBlobLists(run);
    await uploadSpooled(run);
    await uploadBlobLists(run);
    const manifest = await commitManifest(run);
    await saveListings(run, manifest.id);
    return manifest;
  } catch (err) {
    await run.finishing?.catch(() => undefined); // published archives are then removed with the rest
    await run.store?.writer.abort();
    await discardListings(run);
    await discardPartial(ctx.backend, run.id, ctx.log);
    // An abort surfaces from the streams as a bare AbortError: report why the run stopped.
    throw ctx.signal?.aborted ? ctx.signal.reason : err;
  } finally {
    await finish(run);
  }
}

/** Maintenance mode on; for restore's safety snapshot of a broken site, a stop of the whole site instead. */
async function quietSite(run: BackupRun): Promise<void> {
  const quiet = await maintenanceOrStop(
    run.stack,
    { plan: run.plan, mode: run.mode, mp: run.mp },
    run.ctx.fallback,
    run.ctx.log,
  );
  run.plan = quiet.plan;
  run.mode = quiet.mode;
  run.mp = quiet.mp;
  run.maintenanceSince = Date.now();
  run.maintenanceUsed = run.mp.maintenance.active || run.mp.maintenance.alreadyOn;
}

async function maintenanceOff(run: BackupRun): Promise<void> {
  if (!run.mp.maintenance.active) return;
  await run.mp.maintenance.off({ warnOnly: run.ctx.fallback !== undefined });
  run.timings.maintenanceMs = Date.now() - run.maintenanceSince;
}

/** Whatever happened: maintenance mode off, post hooks (they undo the pre hooks), spool removed, state cleared. */
async function finish(run: BackupRun): Promise<void> {
  const { docker, log } = run.ctx;
  await maintenanceOff(run).catch((e: unknown) =>
    log.error({ step: 'maintenance', err: e }, (e as Error).message),
  );
  await runHooks(docker, run.hooks.post, log).catch((e: unknown) =>
    log.error({ step: 'hook', err: e }, 'post hook failed'),
  );
  await rm(run.spoolDir, { recursive: true, force: true }).catch(() => undefined);
  // A maintenance mode that would not turn off stays recorded: the next start retries (recover/run.ts).
  if (!run.mp.maintenance.active) await run.state.clear();
}

import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import {
  bytesWritten,
  FORMAT,
  FORMAT_SHARED_LISTS,
  FORMAT_STORE,
  MANIFEST_NAME,
  type Manifest,
  serializeManifest,
} from '../archive/manifest.js';
import { TOOL } from '../common/version.js';
import { listKey } from '../store/layout.js';
import type { BackupRun } from './context.js';
import { copyReused } from './reuse.js';
import { describeServices, describeSite, putFile } from './steps.js';

/** Remote targets: the spooled archives go up after the stack is back, so the upload adds no downtime. */
export async function uploadSpooled(run: BackupRun): Promise<void> {
  if (!run.spool) return;
  const { backend, log, signal } = run.ctx;
  const tu = Date.now();
  for (const v of [...run.volumes, ...(run.database ? [run.database] : [])]) {
    signal?.throwIfAborted();
    if (await copyReused(run, v)) continue;
    await putFile(backend, `${run.id}/${v.file}`, join(run.spoolDir, v.file), v.storedBytes, run.state);
    await rm(join(run.spoolDir, v.file), { force: true });
  }
  run.timings.uploadMs = Date.now() - tu;
  log.info(
    { step: 'upload', ms: run.timings.uploadMs, target: backend.location },
    'uploaded spooled archives',
  );
}

/** Each incremental volume's blob list (always spooled: it is written inside the window), put after it. */
export async function uploadBlobLists(run: BackupRun): Promise<void> {
  const { backend, signal } = run.ctx;
  for (const v of run.volumes) {
    const bv = v.blobs && run.store?.volumes.get(v.dockerName);
    if (!bv?.list) continue;
    signal?.throwIfAborted();
    // A new shared base first: a list never names a base that is not stored.
    const base = bv.list.blobs.base;
    if (base && bv.list.newBase) {
      await putFile(backend, listKey(base.sha256), bv.list.newBase.path, base.storedBytes, run.state);
      await rm(bv.list.newBase.path, { force: true });
    }
    await putFile(backend, `${run.id}/${bv.list.file}`, bv.list.path, bv.list.blobs.storedBytes, run.state);
    await rm(bv.list.path, { force: true });
  }
}

/** The commit point: the manifest, written last. A snapshot exists once its manifest does. */
export async function commitManifest(run: BackupRun): Promise<Manifest> {
  const { ctx, plan, mp } = run;
  const manifest: Manifest = {
    format: run.volumes.some((v) => v.blobs?.base)
      ? FORMAT_SHARED_LISTS
      : run.volumes.some((v) => v.blobs)
        ? FORMAT_STORE
        : FORMAT,
    id: run.id,
    kind: ctx.kind ?? 'manual',
    status: 'ok',
    createdAt: run.createdAt.toISOString(),
    completedAt: new Date().toISOString(),
    tool: TOOL,
    project: run.stack.project,
    ...(ctx.job ? { job: ctx.job } : {}),
    mode:
      run.mode === 'online' ? 'online' : plan.actions.some((a) => a.action === 'pause') ? 'pause' : 'stop',
    codec: run.codec.name,
    encryption: run.encryption?.manifest ?? null,
    volumes: run.volumes,
    database: run.database,
    site: describeSite(run),
    stack: {
      services: describeServices(run.stack, plan),
      moodle: run.moodle,
      mariadb: mp.site.database?.version ? { version: mp.site.database.version } : null,
    },
    timings: {
      quiesceMs: run.timings.quiesceMs,
      readMs: run.timings.readMs,
      downtimeMs: run.timings.downtimeMs,
      uploadMs: run.timings.uploadMs,
      totalMs: Date.now() - run.createdAt.getTime(),
      maintenanceMs: run.timings.maintenanceMs,
    },
  };
  await ctx.backend.put(`${run.id}/${MANIFEST_NAME}`, Readable.from([serializeManifest(manifest)]));
  ctx.log.info(
    {
      step: 'commit',
      snapshot: run.id,
      totalMs: manifest.timings.totalMs,
      downtimeMs: run.timings.downtimeMs,
      storedBytes: bytesWritten(manifest),
    },
    `snapshot ${run.id} committed`,
  );
  return manifest;
}

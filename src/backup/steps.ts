import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, rm } from 'node:fs/promises';
import type { PassThrough } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { listSnapshots } from '../archive/catalog.js';
import type { Manifest, ManifestSite } from '../archive/manifest.js';
import type { Config } from '../config/types.js';
import type { Logger } from '../observe/logger.js';
import type { Stack } from '../stack/discover.js';
import type { QuiescePlan } from '../stack/plan.js';
import { type Backend, isLocalBackend, type UploadLedger, type WritableFile } from '../storage/backend.js';
import type { RetryingBackend } from '../storage/retry.js';
import { spoolError, spoolWriteFailed } from '../storage/spool-error.js';
import type { BackupRun } from './context.js';

/** Small steps of the backup pipeline (backup/run.ts), kept apart so that file reads as the pipeline. */

export type Sink = (compressed: PassThrough) => Promise<void>;

export function spoolSink(path: string): Sink {
  return (s) =>
    pipeline(s, createWriteStream(path, { mode: 0o600 })).catch((err: unknown) => {
      throw spoolError(err, path);
    });
}

/** A spool file for the compressor to write itself (backup/stream.ts `direct`); uploaded after the window. */
export async function spoolFile(path: string): Promise<WritableFile> {
  const fh = await open(path, 'wx', 0o600).catch((err: unknown) => {
    throw spoolError(err, path);
  });
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await fh.close();
  };
  return {
    fd: fh.fd,
    path,
    flushSoFar: async () => undefined, // the upload reads it back; nothing needs it on disk
    commit: async () => {
      try {
        const { size } = await fh.stat();
        await close();
        return { size };
      } catch (err) {
        throw spoolError(err, path);
      }
    },
    discard: async () => {
      await close().catch(() => undefined);
      await rm(path, { force: true });
    },
    writeFailed: (detail) => spoolWriteFailed(path, detail),
  };
}

/** The run's spool directory, private to the sidecar; an I/O error there names the spool (STORAGE_FAILED). */
export async function makeSpoolDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 }).catch((err: unknown) => {
    throw spoolError(err, dir);
  });
}

export function backendSink(backend: Backend, key: string, uploads?: UploadLedger): Sink {
  return async (s) => {
    await backend.put(key, s, { uploads });
  };
}

/**
 * Spool when the target is remote: then the upload happens after the stack is back up. A local target is
 * written directly (it is disk already); `always`/`never` override.
 */
export function useSpool(config: Config, backend: Backend): boolean {
  if (config.spool === 'always') return true;
  if (config.spool === 'never') return false;
  return !isLocalBackend(backend);
}

export function describeServices(stack: Stack, plan: QuiescePlan): Manifest['stack']['services'] {
  return stack.containers.map((c) => ({
    service: c.service,
    container: c.name,
    image: c.image,
    imageId: c.imageId,
    // A swarm service is scaled to 0 by the stop of any one of its tasks: all of them stop.
    action:
      plan.actions.find(
        (a) => a.container.id === c.id || (c.swarm !== undefined && a.container.swarm?.id === c.swarm.id),
      )?.action ?? 'none',
  }));
}

/** How Moodle was found and what the snapshot was taken with; an absence is said in words too. */
export function describeSite(run: BackupRun): ManifestSite {
  const m = run.mp.site.moodle;
  const moodleExcludes = [...run.mp.excludes.values()].some((e) => e.source === 'moodle-default');
  const warnings = [...run.mp.siteWarnings];
  if (m && !run.maintenanceUsed)
    warnings.push('taken without maintenance mode: the site was stopped instead (restore of a broken site)');
  return {
    moodle: m?.container.name ?? null,
    maintenance: run.maintenanceUsed,
    moodleExcludes,
    dataroot: m?.dataroot?.path ?? null,
    datarootVolume: m?.dataroot?.volume?.name ?? null,
    warnings,
  };
}

/** Removes what a failed run stored; without a manifest it is invisible anyway, this only frees space. */
export async function discardPartial(backend: Backend, id: string, log: Logger): Promise<void> {
  try {
    for (const o of await backend.list(`${id}/`)) await backend.delete(o.key);
  } catch (err) {
    log.warn(
      { step: 'cleanup', snapshot: id, err },
      "could not remove the failed run's partial objects; prune sweeps them",
    );
  }
}

/** Raw sizes of the newest snapshot's volumes and dump, for the progress totals (terminal only). */
export async function previousRawSizes(
  backend: Backend,
): Promise<{ volumes: Record<string, number>; dump?: number }> {
  try {
    const last = (await listSnapshots(backend)).find((e) => e.status === 'ok');
    const volumes = Object.fromEntries((last?.manifest?.volumes ?? []).map((v) => [v.name, v.rawBytes]));
    const dump = last?.manifest?.database?.rawBytes;
    return dump === undefined ? { volumes } : { volumes, dump };
  } catch {
    return { volumes: {} };
  }
}

/** Uploads a spooled file; a retrying backend re-reads the file on each try (a one-shot stream cannot be). */
export async function putFile(
  backend: Backend,
  key: string,
  path: string,
  size: number,
  uploads?: UploadLedger,
): Promise<void> {
  const open = () => createReadStream(path);
  const retrying = backend as Backend & { putFrom?: RetryingBackend['putFrom'] };
  if (backend.putFile) await backend.putFile(key, path, { contentLength: size, uploads });
  else if (retrying.putFrom) await retrying.putFrom(key, open, { contentLength: size, uploads });
  else await backend.put(key, open(), { contentLength: size, uploads });
}

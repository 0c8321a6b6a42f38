import { createReadStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { listSnapshots, resolveSnapshot } from '../archive/catalog.js';
import type { Manifest, ManifestVolume } from '../archive/manifest.js';
import type { TarStats } from '../archive/tar-guard.js';
import { verifyVolume } from '../archive/verify.js';
import { SidecarError } from '../common/errors.js';
import type { Logger } from '../observe/logger.js';
import { downloadLabel, dumpLabel, ProgressBoard, type VolumeTotal } from '../observe/progress.js';
import { isLocalBackend } from '../storage/backend.js';
import { StoreVerifier } from './blobs.js';
import { DRILL_PREFIX, drill, drillHelperImage, rand } from './drill.js';
import { verifyDumpResult } from './dump.js';
import type { VerifyLevel, VerifyOptions, VerifyReport, VerifyResult } from './types.js';

/**
 * Checks snapshots without touching the stack. Level 1 reads every archive once (size, sha256, decompression,
 * tar guard). `deep` then restores each archive into a scratch volume: entry counts must match what the
 * guard counted, and a MariaDB datadir is started in a throwaway server (the snapshot's own image, no
 * network) and every table must pass `mariadb-check`. Scratch containers and volumes are always removed.
 */
export async function runVerify(o: VerifyOptions): Promise<VerifyReport> {
  const results: VerifyResult[] = [];
  const store = new StoreVerifier(o.backend, o.config, o.signal);
  if (o.all) {
    const entries = await listSnapshots(o.backend);
    if (entries.length === 0) {
      throw new SidecarError(
        'SNAPSHOT_NOT_FOUND',
        `no snapshots at ${o.backend.location}`,
        'run `backup` first',
      );
    }
    for (const e of entries) {
      if (e.status === 'ok' && e.manifest) results.push(...(await verifyOne(o, store, e.manifest)));
      else {
        const detail =
          e.status === 'incomplete'
            ? 'incomplete: no manifest.json (a failed backup, or one still running)'
            : `damaged: ${e.error ?? 'manifest unreadable'}`;
        o.log.error({ step: 'verify', snapshot: e.id, status: e.status }, `snapshot ${e.id} ${detail}`);
        results.push({ snapshot: e.id, volume: '-', level: 'catalog', ok: false, detail, ms: 0 });
      }
    }
  } else {
    results.push(...(await verifyOne(o, store, await resolveSnapshot(o.backend, o.snapshot ?? 'latest'))));
  }
  return { ok: results.every((r) => r.ok), results };
}

async function verifyOne(o: VerifyOptions, store: StoreVerifier, m: Manifest): Promise<VerifyResult[]> {
  const out: VerifyResult[] = [];
  // A remote archive is downloaded once: checked while spooled, then the drill extracts the spooled copy.
  const spool = Boolean(o.deep) && !isLocalBackend(o.backend);
  const spoolDir = join(o.config.spoolDir, `verify-${m.id}-${rand()}`);
  if (spool) await mkdir(spoolDir, { recursive: true, mode: 0o700 });
  let helperImage: string | undefined;
  const board = o.deep ? deepBoard(m, spool) : undefined;
  try {
    for (const v of m.volumes) {
      const spoolFile = spool ? join(spoolDir, v.file) : undefined;
      const t0 = Date.now();
      let stats: TarStats;
      try {
        stats = await verifyVolume(o.backend, m, v, {
          spoolTo: spoolFile,
          signal: o.signal,
          encryption: o.config.encryption,
          progress: board?.volume(v.name),
          download: spoolFile ? board?.item(downloadLabel(v.name)) : undefined,
        });
      } catch (err) {
        if (o.signal?.aborted) throw err;
        out.push(failure(m, v, 'archive', err, t0, o.log));
        continue;
      }
      const { files, dirs, symlinks, hardlinks, bytes } = stats;
      const detail = `sha256 ok, ${files} files, ${dirs} dirs, ${symlinks} symlinks, ${hardlinks} hard links, ${bytes} bytes`;
      out.push({ snapshot: m.id, volume: v.name, level: 'archive', ok: true, detail, stats, ms: ms(t0) });
      o.log.info(
        { step: 'verify', snapshot: m.id, volume: v.name, ...stats, ms: ms(t0) },
        `verified ${v.name}`,
      );
      if (v.blobs) out.push(await blobsResult(o, store, m, v));
      if (!o.deep) continue;
      const t1 = Date.now();
      try {
        helperImage ??= await drillHelperImage(o, m);
        const source = spoolFile ? createReadStream(spoolFile) : await o.backend.get(`${m.id}/${v.file}`);
        const d = await drill(o, m, v, stats, helperImage, source, board?.volume(drillLabel(v.name))).finally(
          () => source.destroy(),
        );
        out.push({ snapshot: m.id, volume: v.name, level: 'drill', ok: true, detail: d, ms: ms(t1) });
        o.log.info({ step: 'drill', snapshot: m.id, volume: v.name, ms: ms(t1) }, `drill ${v.name}: ${d}`);
      } catch (err) {
        if (o.signal?.aborted) throw err;
        out.push(failure(m, v, 'drill', err, t1, o.log));
      } finally {
        if (spoolFile) await rm(spoolFile, { force: true });
      }
    }
    if (m.database) {
      const label = dumpLabel(m.database.service);
      const progress = board && { check: board.item(label), drill: board.item(drillLabel(label)) };
      out.push(
        ...(await verifyDumpResult(o, m, m.database, { failure, drillPrefix: DRILL_PREFIX, progress })),
      );
    }
  } finally {
    if (spool) await rm(spoolDir, { recursive: true, force: true });
  }
  return out;
}

/** The drill's line for an archive (the archive check's line carries its plain name). */
function drillLabel(name: string): string {
  return `${name} drill`;
}

/**
 * `--deep` on a terminal: each archive is read twice, checked and then restored into a scratch volume (a
 * dump: loaded into a scratch server), with the raw sizes the manifest recorded; a remote volume archive is
 * downloaded into the spool first (its stored size).
 */
function deepBoard(m: Manifest, spool: boolean): ProgressBoard | undefined {
  if (!ProgressBoard.enabled()) return undefined;
  const totals: Record<string, VolumeTotal> = {};
  const items = m.volumes.map((v) => ({ name: v.name, bytes: v.rawBytes }));
  if (m.database) items.push({ name: dumpLabel(m.database.service), bytes: m.database.rawBytes });
  for (const v of m.volumes)
    if (spool) totals[downloadLabel(v.name)] = { bytes: v.storedBytes, estimated: false };
  for (const { name, bytes } of items) {
    totals[name] = { bytes, estimated: false };
    totals[drillLabel(name)] = { bytes, estimated: false };
  }
  return new ProgressBoard(totals);
}

/** An incremental volume's blobs: list and closure, and with --read-data every blob's content. */
async function blobsResult(
  o: VerifyOptions,
  store: StoreVerifier,
  m: Manifest,
  v: ManifestVolume,
): Promise<VerifyResult> {
  const t0 = Date.now();
  try {
    const detail = await store.check(m, v, o.readData === true);
    o.log.info({ step: 'verify', snapshot: m.id, volume: v.name, check: 'blobs', ms: ms(t0) }, detail);
    return { snapshot: m.id, volume: v.name, level: 'blobs', ok: true, detail, ms: ms(t0) };
  } catch (err) {
    if (o.signal?.aborted) throw err;
    return failure(m, v, 'blobs', err, t0, o.log);
  }
}

function failure(
  m: Manifest,
  v: ManifestVolume,
  level: VerifyLevel,
  err: unknown,
  t0: number,
  log: Logger,
): VerifyResult {
  const code = err instanceof SidecarError ? err.code : undefined;
  const detail = (err as Error)?.message ?? String(err);
  log.error({ step: level === 'drill' ? 'drill' : 'verify', snapshot: m.id, volume: v.name, code }, detail);
  return { snapshot: m.id, volume: v.name, level, ok: false, detail, code, ms: ms(t0) };
}

function ms(t0: number): number {
  return Date.now() - t0;
}

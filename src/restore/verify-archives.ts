import { join } from 'node:path';
import type { TarStats } from '../archive/tar-guard.js';
import { verifyVolume } from '../archive/verify.js';
import { verifyDump } from '../database/load.js';
import { downloadLabel, dumpLabel, ProgressBoard, type VolumeTotal } from '../observe/progress.js';
import type { RestoreTarget } from './plan.js';
import type { RestoreOptions } from './types.js';

/**
 * Reads every archive once before anything changes: size, sha256, decompression and the tar guard (the
 * dump: size and sha256). Remote archives are spooled on the way, so the restore reads what was checked.
 * Volumes in `skip` are not read here: they are unpacked into staging with the same checks in line
 * (apply.ts, stageAhead), before anything stops.
 */
export async function verifyArchives(
  o: RestoreOptions,
  t: RestoreTarget,
  spoolDir: string | undefined,
  skip: Set<string> = new Set(),
): Promise<Record<string, TarStats>> {
  const { backend, config, log } = o;
  const spoolTo = (file: string) => (spoolDir ? join(spoolDir, file) : undefined);
  const verified: Record<string, TarStats> = {};
  const board = verifyBoard(t, skip, spoolDir !== undefined);
  for (const v of t.selected) {
    if (skip.has(v.name)) continue;
    const t0 = Date.now();
    verified[v.name] = await verifyVolume(backend, t.manifest, v, {
      spoolTo: spoolTo(v.file),
      signal: o.signal,
      encryption: config.encryption,
      progress: board?.volume(v.name),
      download: spoolDir ? board?.item(downloadLabel(v.name)) : undefined,
    });
    log.info(
      { step: 'verify', volume: v.name, ...verified[v.name], ms: Date.now() - t0 },
      `verified ${v.name}`,
    );
  }
  if (t.db) {
    const t0 = Date.now();
    const r = await verifyDump(backend, t.manifest, t.db, {
      spoolTo: spoolTo(t.db.file),
      signal: o.signal,
      encryption: config.encryption,
      progress: board?.item(dumpLabel(t.db.service)),
      download: spoolDir ? board?.item(downloadLabel(dumpLabel(t.db.service))) : undefined,
    });
    log.info({ step: 'verify', file: t.db.file, ...r, ms: Date.now() - t0 }, `verified ${t.db.file}`);
  }
  return verified;
}

/**
 * The pass's progress on a terminal: every archive it reads, with the raw sizes the manifest recorded, and
 * for a remote target each download into the spool before it (stored sizes).
 */
function verifyBoard(t: RestoreTarget, skip: Set<string>, spool: boolean): ProgressBoard | undefined {
  if (!ProgressBoard.enabled()) return undefined;
  const items = t.selected
    .filter((v) => !skip.has(v.name))
    .map((v) => ({ name: v.name, rawBytes: v.rawBytes, storedBytes: v.storedBytes }));
  if (t.db)
    items.push({ name: dumpLabel(t.db.service), rawBytes: t.db.rawBytes, storedBytes: t.db.storedBytes });
  const totals: Record<string, VolumeTotal> = {};
  for (const i of items) {
    if (spool) totals[downloadLabel(i.name)] = { bytes: i.storedBytes, estimated: false };
    totals[i.name] = { bytes: i.rawBytes, estimated: false };
  }
  return new ProgressBoard(totals);
}

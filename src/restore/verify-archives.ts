import { join } from 'node:path';
import type { TarStats } from '../archive/tar-guard.js';
import { verifyVolume } from '../archive/verify.js';
import { verifyDump } from '../database/load.js';
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
  for (const v of t.selected) {
    if (skip.has(v.name)) continue;
    const t0 = Date.now();
    verified[v.name] = await verifyVolume(backend, t.manifest, v, {
      spoolTo: spoolTo(v.file),
      signal: o.signal,
      encryption: config.encryption,
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
    });
    log.info({ step: 'verify', file: t.db.file, ...r, ms: Date.now() - t0 }, `verified ${t.db.file}`);
  }
  return verified;
}

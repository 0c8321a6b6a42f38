import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { SidecarError } from '../common/errors.js';
import { isLocalBackend } from '../storage/backend.js';
import { pickHelperImage } from '../volume/archive-api.js';
import { volumeDir } from '../volume/mount-dir.js';
import { apply } from './apply.js';
import { verifyBlobs } from './blobs.js';
import { canStageAhead } from './mount.js';
import { planRestore, type RestoreTarget } from './plan.js';
import { takeSafetySnapshot } from './steps.js';
import type { RestoreOptions, RestoreResult } from './types.js';
import { verifyArchives } from './verify-archives.js';

/**
 * The restore pipeline: plan → verify the archives (nothing touched yet) → confirm → safety snapshot →
 * apply (apply.ts: unpack what can be staged while the stack runs; stop what mounts the volumes; per volume,
 * unpack beside the old data and swap it in, or empty and extract; start; check MariaDB and Moodle while the
 * old content is deleted). Any failure midway names each volume's state and the snapshot to roll back to.
 */
export async function runRestore(o: RestoreOptions): Promise<RestoreResult> {
  const t = await planRestore(o);
  if (o.dryRun) return { plan: t.plan, applied: false, verified: {} };
  // Remote archives are spooled while they are verified, and restored from the spool.
  const spoolDir = isLocalBackend(o.backend)
    ? undefined
    : join(o.config.spoolDir, `restore-${t.manifest.id}`);
  if (spoolDir) await mkdir(spoolDir, { recursive: true, mode: 0o700 });
  try {
    const ahead = await stageAheadSet(o, t);
    const verified = await verifyArchives(o, t, spoolDir, onePass(o, t, spoolDir) ? ahead : undefined);
    const blobs = await verifyBlobs(o.backend, t.manifest, t.selected, o.config.encryption, o.log);
    if (o.confirm && !(await o.confirm(t.plan))) {
      throw new SidecarError('RESTORE_REFUSED', 'restore cancelled; nothing was changed');
    }
    const safety = o.safetySnapshot === false ? undefined : await takeSafetySnapshot(o, t.plan);
    const image = pickHelperImage(o.config, t.self?.image, t.stack);
    const { downtimeMs, report } = await apply(o, { ...t, spoolDir, safety, verified, image, ahead, blobs });
    return { plan: t.plan, applied: true, safetySnapshot: safety, verified, report, downtimeMs };
  } finally {
    if (spoolDir) await rm(spoolDir, { recursive: true, force: true });
  }
}

/**
 * The volumes unpacked into staging before the stack stops (restore/mount.ts, canStageAhead): the downtime
 * is then their swap, not their extraction.
 */
async function stageAheadSet(o: RestoreOptions, t: RestoreTarget): Promise<Set<string>> {
  const ahead = new Set<string>();
  for (const v of t.selected) {
    const p = t.plan.volumes.find((x) => x.name === v.name);
    if (!p?.exists) continue;
    const dir = await volumeDir(o.docker, p.dockerName, t.self, o.config.readPath, 'write');
    if (await canStageAhead(dir, v.rawBytes)) ahead.add(v.name);
  }
  return ahead;
}

/**
 * Whether the volumes staged ahead skip the separate verification pass: unpacking into staging runs the same
 * checks (sha256, decompression, tar guard) and a failure leaves the volume as it was. Not when something
 * must happen between verification and the first change: a person's confirmation ("All archives verified"),
 * or a safety snapshot (a bad archive must be refused before it is taken). Nor for remote targets, whose
 * verification downloads the archive into the spool that the restore then applies.
 */
function onePass(o: RestoreOptions, t: RestoreTarget, spoolDir: string | undefined): boolean {
  const safety = o.safetySnapshot !== false && t.plan.volumes.some((v) => v.exists);
  return !o.confirm && !safety && !spoolDir;
}

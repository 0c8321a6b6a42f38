import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { SidecarError } from '../common/errors.js';
import { isLocalBackend } from '../storage/backend.js';
import { pickHelperImage } from '../volume/archive-api.js';
import { apply } from './apply.js';
import { verifyBlobs } from './blobs.js';
import { planRestore } from './plan.js';
import { takeSafetySnapshot } from './steps.js';
import type { RestoreOptions, RestoreResult } from './types.js';
import { verifyArchives } from './verify-archives.js';

/**
 * The restore pipeline: plan → verify every archive (nothing touched yet) → confirm → safety snapshot →
 * apply (apply.ts: stop what mounts the volumes; per volume, unpack beside the old data and swap it in, or
 * empty and extract; start; check MariaDB and Moodle while the old content is deleted). Any failure midway
 * names each volume's state and the snapshot to roll back to.
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
    const verified = await verifyArchives(o, t, spoolDir);
    const blobs = await verifyBlobs(o.backend, t.manifest, t.selected, o.config.encryption, o.log);
    if (o.confirm && !(await o.confirm(t.plan))) {
      throw new SidecarError('RESTORE_REFUSED', 'restore cancelled; nothing was changed');
    }
    const safety = o.safetySnapshot === false ? undefined : await takeSafetySnapshot(o, t.plan);
    const image = pickHelperImage(o.config, t.self?.image, t.stack);
    const { downtimeMs, report } = await apply(o, { ...t, spoolDir, safety, verified, image, blobs });
    return { plan: t.plan, applied: true, safetySnapshot: safety, verified, report, downtimeMs };
  } finally {
    if (spoolDir) await rm(spoolDir, { recursive: true, force: true });
  }
}

import { resolveSnapshot } from '../archive/catalog.js';
import { assertDecryptable } from '../archive/encryption.js';
import type { Manifest, ManifestDatabase, ManifestVolume } from '../archive/manifest.js';
import { findSelf, type SelfInfo } from '../docker/self.js';
import { olderThanSnapshot } from '../moodle/versions.js';
import { discoverStack, type Stack } from '../stack/discover.js';
import { databasePlan, runningVersions, selectDatabase } from './online.js';
import { makePlan, selectVolumes } from './steps.js';
import type { RestoreOptions, RestorePlan } from './types.js';

/** What a restore works from, all read before anything is verified or changed. */
export interface RestoreTarget {
  manifest: Manifest;
  /** The snapshot's database dump, when one was asked for (online snapshots). */
  db: ManifestDatabase | null;
  /** The file volumes to restore. */
  selected: ManifestVolume[];
  /** The sidecar's container: its mounts may reach a volume as a directory. */
  self: SelfInfo | null;
  stack: Stack;
  plan: RestorePlan;
}

/**
 * Resolves the snapshot (refused at once when it cannot be decrypted with the keys given), picks its volumes,
 * finds where they go in the running project and what must stop, and warns when the running code is newer
 * than the snapshot's.
 */
export async function planRestore(o: RestoreOptions): Promise<RestoreTarget> {
  const { docker, config, backend, log } = o;
  const manifest = await resolveSnapshot(backend, o.snapshot, o.job);
  assertDecryptable(manifest.id, manifest.encryption, config.encryption);
  const db = selectDatabase(manifest, o.volumes);
  const fileVolumes = o.volumes?.filter((w) => w !== db?.volume.name);
  // Only the dump asked for: no file volume (an empty list would mean all of them).
  const selected = o.volumes?.length && !fileVolumes?.length ? [] : selectVolumes(manifest, fileVolumes);
  const self = await findSelf(docker);
  const stack = await discoverStack(
    docker,
    { project: config.project ?? manifest.project, volumes: [] },
    self,
  );
  const plan = await makePlan(docker, manifest, selected, stack);
  if (db) await databasePlan(docker, plan, stack, db);
  for (const w of olderThanSnapshot(manifest, await runningVersions(docker, stack)))
    log.warn({ step: 'check', snapshot: manifest.id }, w);
  log.info(
    { step: 'plan', snapshot: manifest.id, volumes: plan.volumes.map((v) => v.name), stop: plan.stop },
    `restore ${manifest.id} into ${plan.project}`,
  );
  return { manifest, db, selected, self, stack, plan };
}

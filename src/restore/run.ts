import { createReadStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { resolveSnapshot } from '../archive/catalog.js';
import { assertDecryptable } from '../archive/encryption.js';
import type { Manifest, ManifestVolume } from '../archive/manifest.js';
import type { TarStats } from '../archive/tar-guard.js';
import { verifyVolume } from '../archive/verify.js';
import { SidecarError } from '../common/errors.js';
import { verifyDump } from '../database/load.js';
import { findSelf, type SelfInfo } from '../docker/self.js';
import { afterStart, type StartReport } from '../moodle/after-start.js';
import { olderThanSnapshot } from '../moodle/versions.js';
import { manifestTotals, ProgressBoard } from '../observe/progress.js';
import { discoverStack, type Stack } from '../stack/discover.js';
import { stopOrder } from '../stack/plan.js';
import { quiesce } from '../stack/quiesce.js';
import { ownedByMe, StateStore } from '../stack/state.js';
import { isLocalBackend } from '../storage/backend.js';
import { pickHelperImage } from '../volume/archive-api.js';
import { extractInto } from '../volume/extract.js';
import { volumeDir } from '../volume/mount-dir.js';
import { ensureVolume } from '../volume/restore-volume.js';
import type { SwapRecord } from '../volume/swap.js';
import { restoreFileVolume } from './mount.js';
import { databasePlan, restoreDatabase, runningVersions, selectDatabase } from './online.js';
import { RestoreProgress } from './progress.js';
import { deleteOldContent, makePlan, selectVolumes, takeSafetySnapshot } from './steps.js';
import type { RestoreOptions, RestorePlan, RestoreResult } from './types.js';

/**
 * The restore pipeline: resolve → plan → verify every archive (nothing touched yet) → confirm → safety
 * snapshot → stop what mounts the volumes → per volume: unpack beside the old data and swap it in (mount
 * path, restore/mount.ts) or empty and extract (archive API) → start → check MariaDB and Moodle, while the
 * old content of plain volumes is deleted. Any failure midway names each volume's state and the snapshot to
 * roll back to.
 */
export async function runRestore(o: RestoreOptions): Promise<RestoreResult> {
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
  if (o.dryRun) return { plan, applied: false, verified: {} };

  const spool = !isLocalBackend(backend);
  const spoolDir = join(config.spoolDir, `restore-${manifest.id}`);
  if (spool) await mkdir(spoolDir, { recursive: true, mode: 0o700 });
  try {
    const verified: Record<string, TarStats> = {};
    for (const v of selected) {
      const t0 = Date.now();
      verified[v.name] = await verifyVolume(backend, manifest, v, {
        spoolTo: spool ? join(spoolDir, v.file) : undefined,
        signal: o.signal,
        encryption: config.encryption,
      });
      log.info(
        { step: 'verify', volume: v.name, ...verified[v.name], ms: Date.now() - t0 },
        `verified ${v.name}`,
      );
    }
    if (db) {
      const t0 = Date.now();
      const r = await verifyDump(backend, manifest, db, {
        spoolTo: spool ? join(spoolDir, db.file) : undefined,
        signal: o.signal,
        encryption: config.encryption,
      });
      log.info({ step: 'verify', file: db.file, ...r, ms: Date.now() - t0 }, `verified ${db.file}`);
    }
    if (o.confirm && !(await o.confirm(plan))) {
      throw new SidecarError('RESTORE_REFUSED', 'restore cancelled; nothing was changed');
    }
    const safety = o.safetySnapshot === false ? undefined : await takeSafetySnapshot(o, plan);
    const { downtimeMs, report } = await apply(o, {
      manifest,
      plan,
      stack,
      selected,
      spoolDir: spool ? spoolDir : undefined,
      safety,
      verified,
      image: pickHelperImage(config, self?.image, stack),
      self,
    });
    return { plan, applied: true, safetySnapshot: safety, verified, report, downtimeMs };
  } finally {
    if (spool) await rm(spoolDir, { recursive: true, force: true });
  }
}
interface ApplyInput {
  manifest: Manifest;
  plan: RestorePlan;
  stack: Stack;
  selected: ManifestVolume[];
  /** Where the verified archives were spooled (remote targets); undefined = read from the backend again. */
  spoolDir: string | undefined;
  safety: string | undefined;
  /** What the verification found in each archive. */
  verified: Record<string, TarStats>;
  /** Image for the helper containers. */
  image: string;
  /** The sidecar's container: its mounts may reach a volume as a directory. */
  self: SelfInfo | null;
}

async function apply(
  o: RestoreOptions,
  { manifest, plan, stack, selected, spoolDir, safety, verified, image, self }: ApplyInput,
): Promise<{ downtimeMs: number; report: StartReport }> {
  const { docker, config, backend, log } = o;
  const db =
    manifest.database && plan.volumes.some((v) => v.name === manifest.database?.volume.name)
      ? manifest.database
      : null;
  const dbVolumes = plan.volumes.filter((v) => verified[v.name]?.mariadbDatadir).map((v) => v.dockerName);
  const state = new StateStore(config.stateDir);
  const progress = new RestoreProgress(state, [
    ...selected.map((v) => v.name),
    ...(db ? [db.volume.name] : []),
  ]);
  // Volumes whose old content (volume/swap.ts OLD) is deleted once the stack runs again.
  const deleteLater: { name: string; rec: SwapRecord }[] = [];
  await state.write({
    runId: `restore-${manifest.id}`,
    operation: 'restore',
    startedAt: new Date().toISOString(),
    ...ownedByMe(),
    quiesced: [],
    volumes: { ...progress.volumes },
    safetySnapshot: safety,
  });
  const users = stopOrder(stack.containers.filter((c) => plan.stop.includes(c.name)));
  const t0 = Date.now();
  // A restore always stops (never pauses): the files must not be open while they are replaced.
  const resume = await quiesce(
    docker,
    {
      actions: users.map((container) => ({ container, action: 'stop' as const })),
      selection: 'volume-mounts',
      warnings: [],
    },
    {
      stopTimeoutSeconds: config.stopTimeoutSeconds,
      state,
      log,
    },
  );
  let failure: unknown;
  const board = ProgressBoard.enabled() ? new ProgressBoard(manifestTotals(selected)) : undefined;
  const watch = (name: string) => board?.volume(name);
  const enc = config.encryption;
  try {
    for (const v of selected) {
      o.signal?.throwIfAborted();
      const target = plan.volumes.find((x) => x.name === v.name)?.dockerName as string;
      if (await ensureVolume(docker, target, plan.project, v.name))
        log.info({ step: 'restore', volume: v.name }, `created volume ${target}`);
      // The volume's directory when this process can write it (BACKUP_READ_PATH): GNU tar instead of putArchive.
      const dir = await volumeDir(docker, target, self, config.readPath, 'write');
      const source = () =>
        spoolDir ? createReadStream(join(spoolDir, v.file)) : backend.get(`${manifest.id}/${v.file}`);
      const r = await restoreFileVolume({
        docker,
        volume: target,
        image,
        dir,
        extract: async (to) =>
          extractInto(docker, target, image, await source(), manifest, v, o.signal, enc, to, watch(v.name)),
        stats: verified[v.name],
        progress,
        name: v.name,
        log,
      });
      if (r.deleteOldLater) deleteLater.push({ name: v.name, rec: r.deleteOldLater });
      log.info(
        {
          step: 'restore',
          volume: v.name,
          rawBytes: v.rawBytes,
          ...r.ms,
          readPath: dir ? 'mount' : 'docker',
        },
        `restored ${v.name}`,
      );
    }
    if (db) {
      dbVolumes.push(
        await restoreDatabase(docker, {
          ...o,
          manifest,
          plan,
          stack,
          db,
          image,
          spoolDir,
          mark: (st) => progress.mark(db.volume.name, st),
        }),
      );
    }
  } catch (err) {
    failure = o.signal?.aborted ? o.signal.reason : err;
  }
  let resumeError: unknown;
  await resume().catch((e: unknown) => {
    resumeError = e;
  });
  const downtimeMs = Date.now() - t0;
  if (failure || resumeError) {
    const states = progress.describe();
    const how = safety ? `roll back with \`restore ${safety} --yes\`` : 'no safety snapshot was taken';
    log.error(
      { step: 'restore', volumes: progress.volumes, safetySnapshot: safety, err: failure ?? resumeError },
      `restore failed midway (${states}); ${how}`,
    );
    throw new SidecarError(
      'RESTORE_FAILED',
      `restore of ${manifest.id} failed: ${(failure as Error)?.message ?? (resumeError as Error)?.message}. Volumes: ${states}`,
      how,
      { cause: failure ?? resumeError },
    );
  }
  // While MariaDB and Moodle come up, the old content of plain volumes is deleted (off the stack's downtime).
  const [report] = await Promise.all([
    afterStart(
      docker,
      stack,
      users.map((c) => c.id),
      dbVolumes,
      log,
    ),
    deleteOldContent(deleteLater, log),
  ]);
  await state.clear();
  return { downtimeMs, report };
}

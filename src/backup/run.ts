import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type Docker from 'dockerode';
import { getCodec } from '../archive/codec.js';
import { AGE_EXTENSION, encryptionPlan } from '../archive/encryption.js';
import {
  FORMAT,
  MANIFEST_NAME,
  type Manifest,
  type ManifestDatabase,
  type ManifestVolume,
  newSnapshotId,
  serializeManifest,
} from '../archive/manifest.js';
import { SidecarError } from '../common/errors.js';
import { TOOL } from '../common/version.js';
import type { Config } from '../config/types.js';
import { findSelf } from '../docker/self.js';
import { readMoodleFacts } from '../moodle/facts.js';
import type { Logger } from '../observe/logger.js';
import { ProgressBoard } from '../observe/progress.js';
import { progressTotals } from '../observe/size-scan.js';
import { discoverStack } from '../stack/discover.js';
import { collectHooks, runHooks } from '../stack/hooks.js';
import { assertLabels } from '../stack/label-check.js';
import { planQuiesce } from '../stack/plan.js';
import { quiesce } from '../stack/quiesce.js';
import { ownedByMe, StateStore } from '../stack/state.js';
import type { Backend } from '../storage/backend.js';
import { assertVolume, pickHelperImage } from '../volume/archive-api.js';
import { volumeDir } from '../volume/mount-dir.js';
import { dumpStep } from './dump-step.js';
import { planMoodle } from './moodle-plan.js';
import {
  backendSink,
  describeServices,
  discardPartial,
  makeSpoolDir,
  previousRawSizes,
  putFile,
  spoolSink,
  sum,
  useSpool,
} from './steps.js';
import { maintenanceOrStop, type SiteFallback } from './stop-instead.js';
import { manifestVolume, streamVolume } from './stream.js';

export interface BackupContext {
  docker: Docker;
  config: Config;
  backend: Backend;
  log: Logger;
  kind?: Manifest['kind'];
  /** Restrict to these short volume names (restore's safety snapshot). */
  volumes?: string[];
  /** Aborts the run (SIGTERM/SIGINT): streams stop, the stack is resumed, nothing is committed. */
  signal?: AbortSignal;
  /** The job this run belongs to, recorded in the manifest (retention applies per job). */
  job?: string;
  /** Restore's safety snapshot: a site whose maintenance mode cannot be turned on is stopped instead. */
  fallback?: SiteFallback;
}

/**
 * The backup pipeline, top to bottom: discover → plan → quiesce → stream each volume → resume →
 * upload spooled archives → commit the manifest. The stack is resumed in a finally block, so every
 * exit path (error, abort) restarts it; a crash is covered by the state file (recover/run.ts).
 */
export async function runBackup(ctx: BackupContext): Promise<Manifest> {
  const { docker, config, backend, log } = ctx;
  const t0 = Date.now();
  const createdAt = new Date(t0);
  const id = newSnapshotId(createdAt);
  const self = await findSelf(docker);
  const stack = await discoverStack(
    docker,
    { project: config.project, volumes: ctx.volumes ?? config.volumes },
    self,
  );
  if (stack.volumes.length === 0) {
    throw new SidecarError(
      'VOLUME_NOT_FOUND',
      `project ${stack.project} has no named volumes to back up`,
      'set BACKUP_VOLUMES',
    );
  }
  // A bad label would change what is stopped: refuse before anything is touched.
  assertLabels(stack.containers);
  for (const v of stack.volumes) await assertVolume(docker, v.name, v.short);
  let plan = planQuiesce(stack, config);
  for (const w of plan.warnings) log.warn({ step: 'plan' }, w);
  log.info(
    {
      step: 'plan',
      snapshot: id,
      project: stack.project,
      volumes: stack.volumes.map((v) => v.short),
      quiesce: plan.actions.map((a) => `${a.action} ${a.container.name}`),
      selection: plan.selection,
      target: backend.location,
    },
    `backup ${id} of ${stack.project}: ${stack.volumes.length} volume(s)`,
  );
  const helperImage = pickHelperImage(config, self?.image, stack);
  const moodle = await readMoodleFacts(docker, stack);
  const codec = getCodec(config.compression);
  const encryption = await encryptionPlan(config.encryption);
  const spool = useSpool(config, backend);
  const spoolDir = join(config.spoolDir, id);
  const state = new StateStore(config.stateDir);
  let mp = await planMoodle(docker, stack, config, state, log);
  let mode = config.mode;
  await state.write({
    runId: id,
    operation: 'backup',
    startedAt: createdAt.toISOString(),
    ...ownedByMe(),
    quiesced: [],
  });

  const hooks = collectHooks(stack);
  // Sizes of the previous snapshot give the progress line its totals (terminal only).
  const previous = ProgressBoard.enabled() ? await previousRawSizes(backend) : {};
  const volumes: ManifestVolume[] = [];
  let quiesceMs = 0;
  let readMs = 0;
  let downtimeMs = 0;
  let uploadMs = 0;
  let maintenanceMs = 0;
  let database: ManifestDatabase | null = null;
  let tm = 0;
  const maintenanceOff = async () => {
    if (!mp.maintenance.active) return;
    await mp.maintenance.off({ warnOnly: ctx.fallback !== undefined });
    maintenanceMs = Date.now() - tm;
  };
  try {
    // Maintenance first, so pre hooks act on a quiet site; a failing hook turns it off again (finally).
    ({ plan, mode, mp } = await maintenanceOrStop(stack, { plan, mode, mp }, ctx.fallback, log));
    tm = Date.now();
    await runHooks(docker, hooks.pre, log);
    if (mp.dump) {
      if (spool) await makeSpoolDir(spoolDir);
      const sinkFor = (file: string) =>
        spool ? spoolSink(join(spoolDir, file)) : backendSink(backend, `${id}/${file}`, state);
      database = await dumpStep(
        docker,
        mp.dump,
        codec,
        config.compressionLevel,
        encryption,
        sinkFor,
        log,
        ctx.signal,
      );
      // Maintenance mode only while the dump runs; the file volumes are read live afterwards.
      await maintenanceOff();
    }
    // Resolved before anything stops: BACKUP_READ_PATH=mount with an unreachable volume fails here.
    const dirs = new Map<string, string | null>();
    for (const v of mp.tarVolumes)
      dirs.set(v.name, await volumeDir(docker, v.name, self, config.readPath, 'read'));
    // Before anything stops: a size scan for volumes no earlier snapshot has must not add downtime.
    const board = ProgressBoard.enabled()
      ? new ProgressBoard(
          await progressTotals(
            mp.tarVolumes.map((v) => ({ short: v.short, dir: dirs.get(v.name) })),
            previous,
          ),
        )
      : undefined;
    const tq = Date.now();
    const resume = await quiesce(docker, plan, { stopTimeoutSeconds: config.stopTimeoutSeconds, state, log });
    quiesceMs = Date.now() - tq;
    const tr = Date.now();
    try {
      if (spool) await makeSpoolDir(spoolDir);
      for (const v of mp.tarVolumes) {
        ctx.signal?.throwIfAborted();
        const excludes = mp.excludes.get(v.name) ?? { rules: [], source: 'none' };
        const file = `${v.short}${codec.extension}${encryption ? AGE_EXTENSION : ''}`;
        const sink = spool ? spoolSink(join(spoolDir, file)) : backendSink(backend, `${id}/${file}`, state);
        const r = await streamVolume(
          docker,
          v,
          helperImage,
          {
            codec,
            level: config.compressionLevel,
            after: () => (encryption ? [encryption.stage()] : []),
          },
          sink,
          ctx.signal,
          board?.volume(v.short),
          excludes,
          dirs.get(v.name),
          (message) => log.warn({ step: 'read', volume: v.short }, message),
        );
        volumes.push(manifestVolume(v, file, r, excludes));
        log.info(
          {
            step: 'read',
            volume: v.short,
            rawBytes: r.rawBytes,
            storedBytes: r.storedBytes,
            ms: r.ms,
            readPath: r.via,
            rawViaNode: r.viaNode,
          },
          `read ${v.short}`,
        );
      }
      readMs = Date.now() - tr;
    } finally {
      await resume();
      downtimeMs = plan.actions.length > 0 ? Date.now() - tq : 0;
      log.info({ step: 'resumed', downtimeMs }, `stack resumed after ${(downtimeMs / 1000).toFixed(1)} s`);
      await maintenanceOff();
    }
    if (spool) {
      const tu = Date.now();
      for (const v of [...volumes, ...(database ? [database] : [])]) {
        ctx.signal?.throwIfAborted();
        await putFile(backend, `${id}/${v.file}`, join(spoolDir, v.file), v.storedBytes, state);
        await rm(join(spoolDir, v.file), { force: true });
      }
      uploadMs = Date.now() - tu;
      log.info({ step: 'upload', ms: uploadMs, target: backend.location }, 'uploaded spooled archives');
    }
    const manifest: Manifest = {
      format: FORMAT,
      id,
      kind: ctx.kind ?? 'manual',
      status: 'ok',
      createdAt: createdAt.toISOString(),
      completedAt: new Date().toISOString(),
      tool: TOOL,
      project: stack.project,
      ...(ctx.job ? { job: ctx.job } : {}),
      mode: mode === 'online' ? 'online' : plan.actions.some((a) => a.action === 'pause') ? 'pause' : 'stop',
      codec: codec.name,
      encryption: encryption?.manifest ?? null,
      volumes,
      database,
      stack: {
        services: describeServices(stack, plan),
        moodle,
        mariadb: mp.site.database?.version ? { version: mp.site.database.version } : null,
      },
      timings: { quiesceMs, readMs, downtimeMs, uploadMs, totalMs: Date.now() - t0, maintenanceMs },
    };
    // The commit point: a snapshot exists once its manifest does.
    await backend.put(`${id}/${MANIFEST_NAME}`, Readable.from([serializeManifest(manifest)]));
    log.info(
      {
        step: 'commit',
        snapshot: id,
        totalMs: manifest.timings.totalMs,
        downtimeMs,
        storedBytes: sum(volumes, 'storedBytes') + (database?.storedBytes ?? 0),
      },
      `snapshot ${id} committed`,
    );
    return manifest;
  } catch (err) {
    await discardPartial(backend, id, log);
    // An abort surfaces from the streams as a bare AbortError: report why the run stopped.
    throw ctx.signal?.aborted ? ctx.signal.reason : err;
  } finally {
    // Every exit path leaves the site out of maintenance mode (a crash: the state file, recover/run.ts).
    await maintenanceOff().catch((e: unknown) =>
      log.error({ step: 'maintenance', err: e }, (e as Error).message),
    );
    // Post hooks undo what pre hooks did, so they run after failures too.
    await runHooks(docker, hooks.post, log).catch((e: unknown) =>
      log.error({ step: 'hook', err: e }, 'post hook failed'),
    );
    await rm(spoolDir, { recursive: true, force: true }).catch(() => undefined);
    // A maintenance mode that would not turn off stays recorded: the next start retries (recover/run.ts).
    if (!mp.maintenance.active) await state.clear();
  }
}

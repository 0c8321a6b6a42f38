import { join } from 'node:path';
import { getCodec } from '../archive/codec.js';
import { encryptionPlan } from '../archive/encryption.js';
import { newSnapshotId } from '../archive/manifest.js';
import { SidecarError } from '../common/errors.js';
import { findSelf } from '../docker/self.js';
import { readMoodleFacts } from '../moodle/facts.js';
import { ProgressBoard } from '../observe/progress.js';
import { discoverStack, type Stack } from '../stack/discover.js';
import { collectHooks } from '../stack/hooks.js';
import { assertLabels } from '../stack/label-check.js';
import { planQuiesce } from '../stack/plan.js';
import { ownedByMe, StateStore } from '../stack/state.js';
import { assertVolume, pickHelperImage } from '../volume/archive-api.js';
import type { BackupContext, BackupRun } from './context.js';
import { dumpTotal } from './dump-total.js';
import { planMoodle } from './moodle-plan.js';
import { previousRawSizes, useSpool } from './steps.js';

/**
 * Everything decided before anything changes: the stack and its volumes (a bad label or a missing volume
 * refuses the run here), who stops and how, Moodle's part, codec and encryption. Ends by writing the state
 * file, so a crash from here on is recovered.
 */
export async function prepareRun(ctx: BackupContext): Promise<BackupRun> {
  const { docker, config, backend, log } = ctx;
  const createdAt = new Date();
  const id = newSnapshotId(createdAt);
  const self = await findSelf(docker);
  const stack = await discoverStack(
    docker,
    { project: config.project, volumes: ctx.volumes ?? config.volumes },
    self,
  );
  await checkStack(ctx, stack);
  const plan = planQuiesce(stack, config);
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
  const state = new StateStore(config.stateDir);
  const mp = await planMoodle(docker, stack, config, state, log);
  const run: BackupRun = {
    ctx,
    id,
    createdAt,
    self,
    stack,
    plan,
    mode: config.mode,
    helperImage: pickHelperImage(config, self?.image, stack),
    moodle: await readMoodleFacts(docker, stack, mp.site.moodle),
    codec: getCodec(config.compression),
    encryption: await encryptionPlan(config.encryption),
    spool: useSpool(config, backend),
    spoolDir: join(config.spoolDir, id),
    state,
    mp,
    hooks: collectHooks(stack),
    previous: {},
    volumes: [],
    unfinished: [],
    database: null,
    timings: { quiesceMs: 0, readMs: 0, downtimeMs: 0, uploadMs: 0, maintenanceMs: 0 },
    maintenanceSince: 0,
    maintenanceUsed: false,
  };
  await state.write({
    runId: id,
    operation: 'backup',
    startedAt: createdAt.toISOString(),
    ...ownedByMe(),
    quiesced: [],
  });
  // The age headers (a passphrase's scrypt, ~1.3–2.5 s each) are made now, not inside the downtime.
  await run.encryption?.prepare(run.mp.tarVolumes.length + (run.mp.dump ? 1 : 0));
  // Sizes of the previous snapshot give the progress line its totals (terminal only).
  if (ProgressBoard.enabled()) {
    const previous = await previousRawSizes(backend);
    run.previous = previous.volumes;
    if (run.mp.dump) run.dumpTotal = await dumpTotal(docker, run.mp.dump, previous.dump);
  }
  return run;
}

/** Refuses the run before anything is touched: no volumes, a bad label (it would change what stops), a missing volume. */
async function checkStack(ctx: BackupContext, stack: Stack): Promise<void> {
  if (stack.volumes.length === 0) {
    throw new SidecarError(
      'VOLUME_NOT_FOUND',
      `project ${stack.project} has no named volumes to back up`,
      'set BACKUP_VOLUMES',
    );
  }
  assertLabels(stack.containers);
  for (const v of stack.volumes) await assertVolume(ctx.docker, v.name, v.short);
}

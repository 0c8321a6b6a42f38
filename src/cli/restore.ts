import type { Command } from 'commander';
import { SidecarError } from '../common/errors.js';
import type { RestorePlan, RestoreResult } from '../restore/types.js';
import type { RunContext } from './context.js';
import { formatBytes, formatDuration, table, terminalWidth } from './output.js';
import { ask, isInteractive } from './prompt.js';
import { SNAPSHOT_HEADERS, snapshotRows } from './snapshots.js';

interface RestoreFlags {
  volume?: string[];
  file?: string;
  /** The same as --file: the word restic and the issue use. */
  path?: string;
  to?: string;
  yes?: boolean;
  dryRun?: boolean;
  safetySnapshot: boolean;
  json?: boolean;
  job?: string;
}

export function describePlan(plan: RestorePlan): string {
  const rows = plan.volumes.map((v) => [
    v.name,
    v.dockerName,
    v.exists ? 'overwrite' : 'create',
    formatBytes(v.rawBytes),
    formatBytes(v.storedBytes),
  ]);
  return [
    `snapshot ${plan.snapshot.id} (${plan.snapshot.kind}, ${plan.snapshot.createdAt}) of project ${plan.snapshot.project}`,
    `into project ${plan.project}:`,
    table(['VOLUME', 'DOCKER VOLUME', 'ACTION', 'SIZE', 'STORED'], rows),
    `containers stopped during the restore: ${plan.stop.length ? plan.stop.join(', ') : '(none running)'}`,
  ].join('\n');
}

async function pickSnapshot(ctx: RunContext): Promise<string> {
  const { listSnapshots } = await import('../archive/catalog.js');
  const entries = (await listSnapshots(ctx.backend)).filter((s) => s.status === 'ok');
  if (entries.length === 0)
    throw new SidecarError('SNAPSHOT_NOT_FOUND', `no complete snapshot at ${ctx.backend.location}`);
  const rows = snapshotRows(entries).map((r, i) => [String(i + 1), ...r]);
  process.stdout.write(
    `${table(['#', ...SNAPSHOT_HEADERS], rows, { width: terminalWidth(), wrap: 4, drop: [2] })}\n`,
  );
  const answer = await ask(`Restore which snapshot? [1-${entries.length}] `);
  const n = Number(answer);
  const chosen = Number.isInteger(n) ? entries[n - 1] : entries.find((e) => e.id === answer);
  if (!chosen)
    throw new SidecarError('RESTORE_REFUSED', `no snapshot "${answer}" picked; nothing was changed`);
  return chosen.id;
}

export function registerRestore(program: Command): void {
  program
    .command('restore')
    .description("restore a snapshot into the stack's volumes, after verifying every archive")
    .argument('[snapshot]', 'snapshot id, unique id prefix, or "latest"')
    .option('--volume <name...>', 'restore only these volumes (short names, e.g. moodledata_data)')
    .option('-y, --yes', 'do not ask for confirmation (required without a terminal)')
    .option('--dry-run', 'print the plan and change nothing')
    .option('--no-safety-snapshot', 'do not save the current volumes as a pre-restore snapshot first')
    .option('--json', 'print the result as JSON')
    .option('--job <name>', 'restore from this job’s target; `latest` is its newest snapshot')
    .option(
      '--file <path|sha1>',
      'only this Moodle file (filedir/ab/cd/<sha1>, or its content hash), put back without stopping anything',
    )
    .option('--path <path|sha1>', 'the same as --file')
    .option('--to <dir>', 'with --file: write it under this directory instead of the live dataroot')
    .action(async (snapshotArg: string | undefined, flags: RestoreFlags) => {
      if (flags.path !== undefined && flags.file !== undefined && flags.path !== flags.file)
        throw new SidecarError(
          'USAGE',
          `--path ${flags.path} and --file ${flags.file} name two files`,
          'restore one file per run: give one of them',
        );
      const file = flags.file ?? flags.path;
      if (file) return restoreFile(snapshotArg ?? 'latest', { ...flags, file });
      if (flags.to)
        throw new SidecarError(
          'USAGE',
          '--to goes with --file',
          'e.g. `restore latest --file filedir/ab/cd/<sha1> --to /tmp/out`',
        );
      const interactive = isInteractive();
      if (!flags.dryRun && !interactive && (!snapshotArg || !flags.yes)) {
        throw new SidecarError(
          'RESTORE_REFUSED',
          'restore without a terminal needs a snapshot and --yes; nothing was changed',
          'e.g. `docker exec sidecar restore latest --yes`, or `docker exec -it sidecar restore` to pick interactively',
        );
      }
      // The context (settings, Docker, logger) loads only when a verb runs: `--help` and usage errors stay cheap.
      const { openContext, withRunLock } = await import('./context.js');
      const ctx = await openContext({ job: flags.job, json: flags.json });
      try {
        const snapshot = snapshotArg ?? (interactive ? await pickSnapshot(ctx) : 'latest');
        // Each verb loads its own pipeline: start-up reads only the modules this command runs.
        const { runRestore } = await import('../restore/run.js');
        const result = await withRunLock(ctx, 'restore', () =>
          runRestore({
            docker: ctx.docker,
            config: ctx.config,
            backend: ctx.backend,
            log: ctx.log,
            snapshot,
            volumes: flags.volume,
            safetySnapshot: flags.safetySnapshot,
            dryRun: flags.dryRun,
            signal: ctx.signal,
            ...(flags.job && ctx.job ? { job: ctx.job.name } : {}),
            confirm: flags.yes
              ? undefined
              : async (plan) => {
                  process.stdout.write(`${describePlan(plan)}\nAll archives verified.\n`);
                  return (await ask('Overwrite these volumes? Type "yes" to continue: ')) === 'yes';
                },
          }),
        );
        printResult(result, flags);
      } finally {
        await ctx.close();
      }
    });
}

/** `restore --file`: one Moodle file from the store, into the live dataroot (or --to), nothing stopped. */
async function restoreFile(snapshot: string, flags: RestoreFlags): Promise<void> {
  const { openContext, withRunLock } = await import('./context.js');
  const ctx = await openContext({ job: flags.job, json: flags.json });
  try {
    const { restoreOneFile } = await import('../restore/one-file.js');
    const r = await withRunLock(ctx, 'restore', () =>
      restoreOneFile({
        docker: ctx.docker,
        config: ctx.config,
        backend: ctx.backend,
        log: ctx.log,
        signal: ctx.signal,
        snapshot,
        file: flags.file as string,
        ...(flags.to ? { to: flags.to } : {}),
        ...(flags.job && ctx.job ? { job: ctx.job.name } : {}),
      }),
    );
    process.stdout.write(
      flags.json
        ? `${JSON.stringify(r, null, 2)}\n`
        : `restored ${r.path} (${formatBytes(r.bytes)}) from ${r.snapshot} into ${r.into}\n`,
    );
  } finally {
    await ctx.close();
  }
}

function printResult(result: RestoreResult, flags: RestoreFlags): void {
  if (flags.json) {
    process.stdout.write(
      `${JSON.stringify({ ...result, plan: { ...result.plan, snapshot: result.plan.snapshot.id } }, null, 2)}\n`,
    );
  } else if (!result.applied) {
    process.stdout.write(`${describePlan(result.plan)}\n(dry run: nothing was changed)\n`);
  } else {
    const lines = [
      `restored ${result.plan.snapshot.id}: ${result.plan.volumes.map((v) => v.name).join(', ')}`,
      `stack down for ${formatDuration(result.downtimeMs ?? 0)}`,
      result.safetySnapshot
        ? `undo with: restore ${result.safetySnapshot} --yes`
        : 'no safety snapshot was taken',
      `moodle upgrade check: ${result.report?.upgrade ?? 'not run'}`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  }
}

import type { Command } from 'commander';
import type { Manifest } from '../archive/manifest.js';
import { peakRssMb } from '../observe/peak-rss.js';
import { formatBytes, formatDuration } from './output.js';

export function registerBackup(program: Command): void {
  program
    .command('backup')
    .description(
      'back up the stack now: one job, or every configured job in turn (refused while another run holds the lock)',
    )
    .option('--job <name>', 'run only this job (YAML `jobs:`); default: every job')
    .option('--json', 'print the manifest as JSON (a list of manifests for several jobs)')
    .option('--kind <kind>', 'manual or scheduled', 'manual')
    .action(async (opts: { json?: boolean; kind: string; job?: string }) => {
      // The context (settings, Docker, logger) loads only when a verb runs: `--help` and usage errors stay cheap.
      const { openContext, withRunLock } = await import('./context.js');
      const { createBackend } = await import('../storage/index.js');
      const ctx = await openContext({ job: opts.job, scope: 'all', json: opts.json });
      // Each verb loads its own pipeline: start-up reads only the modules this command runs.
      const { runBackup } = await import('../backup/run.js');
      const jobs = ctx.job ? [ctx.job] : ctx.settings.jobs;
      try {
        // One lock for the whole sequence: no scheduled run slips in between two jobs.
        const manifests = await withRunLock(ctx, 'backup', async () => {
          const done: Manifest[] = [];
          for (const job of jobs) {
            const own = job === ctx.job || jobs.length === 1;
            const backend = own ? ctx.backend : createBackend(job.config.target);
            try {
              done.push(
                await runBackup({
                  docker: ctx.docker,
                  config: job.config,
                  backend,
                  log: ctx.log,
                  kind: opts.kind === 'scheduled' ? 'scheduled' : 'manual',
                  signal: ctx.signal,
                  job: job.name,
                }),
              );
            } finally {
              if (!own) backend.close?.();
            }
          }
          return done;
        });
        ctx.log.info({ step: 'done', peakRssMb: peakRssMb() }, 'backup done');
        if (opts.json) {
          const out = manifests.length === 1 ? manifests[0] : manifests;
          process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
          return;
        }
        // Loaded with the pipeline already: a value import here would load zod at every start.
        const { bytesWritten } = await import('../archive/manifest.js');
        for (const manifest of manifests) {
          // What this run wrote: packs and lists included (a 1st incremental run's packs are most of it).
          const stored = bytesWritten(manifest);
          const dump = manifest.database ? ` + ${manifest.database.file}` : '';
          process.stdout.write(
            `snapshot ${manifest.id}${manifests.length > 1 ? ` (job ${manifest.job})` : ''}: ${manifest.volumes.length} volumes${dump}, ${formatBytes(stored)} stored, ` +
              `downtime ${formatDuration(manifest.timings.downtimeMs)}, total ${formatDuration(manifest.timings.totalMs)}\n`,
          );
        }
      } finally {
        await ctx.close();
      }
    });
}

import type { Command } from 'commander';
import { runBackup } from '../backup.js';
import { openContext, withRunLock } from './context.js';
import { formatBytes, formatDuration } from './output.js';

export function registerBackup(program: Command): void {
  program
    .command('backup')
    .description('back up the stack now (refused while another run holds the lock)')
    .option('--json', 'print the manifest as JSON')
    .option('--kind <kind>', 'manual or scheduled', 'manual')
    .action(async (opts: { json?: boolean; kind: string }) => {
      const ctx = await openContext();
      try {
        const manifest = await withRunLock(ctx, 'backup', () =>
          runBackup({
            docker: ctx.docker,
            config: ctx.config,
            backend: ctx.backend,
            log: ctx.log,
            kind: opts.kind === 'scheduled' ? 'scheduled' : 'manual',
            signal: ctx.signal,
          }),
        );
        ctx.log.info(
          { step: 'done', peakRssMb: Math.round(process.resourceUsage().maxRSS / 1024) },
          'backup done',
        );
        if (opts.json) process.stdout.write(`${JSON.stringify(manifest, null, 2)}\n`);
        else {
          const stored = manifest.volumes.reduce((a, v) => a + v.storedBytes, 0);
          process.stdout.write(
            `snapshot ${manifest.id}: ${manifest.volumes.length} volumes, ${formatBytes(stored)} stored, ` +
              `downtime ${formatDuration(manifest.timings.downtimeMs)}, total ${formatDuration(manifest.timings.totalMs)}\n`,
          );
        }
      } finally {
        await ctx.close();
      }
    });
}

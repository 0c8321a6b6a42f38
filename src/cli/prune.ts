import type { Command } from 'commander';
import { describeDecisions } from '../retention/policy.js';
import { prune } from '../retention/prune.js';
import { openContext, withRunLock } from './context.js';
import { formatBytes } from './output.js';

export function registerPrune(program: Command): void {
  program
    .command('prune')
    .description('forget snapshots the retention policy does not keep (BACKUP_KEEP_*)')
    .option('--dry-run', 'only show which rule keeps each snapshot; delete nothing')
    .option('--json', 'print the decisions as JSON')
    .action(async (opts: { dryRun?: boolean; json?: boolean }) => {
      // Pruning reads and deletes storage only: Docker is not needed (nor recovered) here.
      const ctx = await openContext({ needsDocker: false });
      try {
        const run = () =>
          prune(ctx.backend, ctx.config.retention, { dryRun: opts.dryRun === true, log: ctx.log });
        // A dry run changes nothing, so it need not wait for (or block) a running backup.
        const result = opts.dryRun ? await run() : await withRunLock(ctx, 'prune', run);
        if (opts.json) {
          const out = {
            dryRun: opts.dryRun === true,
            decisions: result.decisions.map((d) => ({ ...d, time: d.time.toISOString() })),
            deleted: result.deleted,
            deletedBytes: result.deletedBytes,
          };
          process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
          return;
        }
        process.stdout.write(describeDecisions(result.decisions));
        if (opts.dryRun) process.stdout.write('dry run: nothing deleted\n');
        else {
          process.stdout.write(
            `deleted ${result.deleted.length} snapshot(s), ${formatBytes(result.deletedBytes)} freed\n`,
          );
        }
      } finally {
        await ctx.close();
      }
    });
}

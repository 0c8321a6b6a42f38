import type { Command } from 'commander';
import type { Job, Settings } from '../config/jobs.js';
import type { Logger } from '../observe/logger.js';
import type { PruneResult } from '../prune/run.js';
import type { StoreSweepResult } from '../prune/sweep.js';
import { DECISION_HEADERS, type Decision, decisionRows, describeDecisions } from '../retention/policy.js';
import type { Backend } from '../storage/backend.js';
import type { RunContext } from './context.js';
import { formatBytes, table, terminalWidth } from './output.js';

export function registerPrune(program: Command): void {
  program
    .command('prune')
    .description(
      "forget snapshots the retention policy does not keep (BACKUP_KEEP_*); each job's retention applies to its own snapshots",
    )
    .option('--dry-run', 'only show which rule keeps each snapshot; delete nothing')
    .option('--job <name>', 'prune only this job’s snapshots; default: every job')
    .option('--json', 'print the decisions as JSON')
    .action(async (opts: { dryRun?: boolean; json?: boolean; job?: string }) => {
      // Pruning reads and deletes storage only: Docker is not needed (nor recovered) here.
      const { openContext, withRunLock } = await import('./context.js');
      const ctx = await openContext({ needsDocker: false, job: opts.job, scope: 'all', json: opts.json });
      const jobs =
        opts.job && ctx.job ? [ctx.job] : [...ctx.settings.jobs, ...(await labelJobs(ctx.settings, ctx.log))];
      try {
        const pruneAll = () => pruneJobs(ctx, jobs, opts.dryRun === true);
        // A dry run changes nothing, so it need not wait for (or block) a running backup.
        const results = opts.dryRun ? await pruneAll() : await withRunLock(ctx, 'prune', pruneAll);
        printResults(results, opts);
      } finally {
        await ctx.close();
      }
    });
}

type JobResult = { job: string; location: string; result: PruneResult };

/** Each job's retention applied to that job's own snapshots, at its own target. */
async function pruneJobs(ctx: RunContext, jobs: Job[], dryRun: boolean): Promise<JobResult[]> {
  const { createBackend } = await import('../storage/index.js');
  const results: JobResult[] = [];
  for (const job of jobs) {
    const own = jobs.length === 1 && job.config.target === ctx.config.target;
    const backend: Backend & { close?: () => void } = own ? ctx.backend : createBackend(job.config.target);
    try {
      const { prune } = await import('../prune/run.js');
      const result = await prune(backend, job.config.retention, {
        dryRun,
        log: ctx.log,
        job: job.name,
        store: job.config,
        signal: ctx.signal,
      });
      results.push({ job: job.name, location: backend.location, result });
    } finally {
      if (!own) backend.close?.();
    }
  }
  return results;
}

function printResults(results: JobResult[], opts: { dryRun?: boolean; json?: boolean }): void {
  if (opts.json) {
    const one = (r: PruneResult) => ({
      decisions: r.decisions.map((d) => ({ ...d, time: d.time.toISOString() })),
      deleted: r.deleted,
      deletedBytes: r.deletedBytes,
      ...(r.store ? { store: r.store } : {}),
    });
    const out =
      results.length === 1 && results[0]
        ? { dryRun: opts.dryRun === true, job: results[0].job, ...one(results[0].result) }
        : {
            dryRun: opts.dryRun === true,
            jobs: results.map((r) => ({ job: r.job, target: r.location, ...one(r.result) })),
          };
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    return;
  }
  for (const { job, location, result } of results) {
    if (results.length > 1) process.stdout.write(`job ${job} (${location}):\n`);
    process.stdout.write(decisionsText(result.decisions));
    if (opts.dryRun) process.stdout.write('dry run: nothing deleted\n');
    else
      process.stdout.write(
        `deleted ${result.deleted.length} snapshot(s), ${formatBytes(result.deletedBytes)} freed\n`,
      );
    if (result.store) process.stdout.write(storeText(result.store, opts.dryRun === true));
  }
}

/** The store's sweep in a line or two: what was (or, on a dry run, would be) deleted and repacked. */
function storeText(s: StoreSweepResult, dryRun: boolean): string {
  if (s.refused) return `store: nothing deleted (${s.refused})\n`;
  const verb = dryRun ? 'would delete' : 'deleted';
  const lines = [
    `store: ${verb} ${s.deadPacks} dead pack(s) (${formatBytes(s.deadBytes)}) and ${s.orphanPacks} unindexed pack(s) (${formatBytes(s.orphanBytes)})`,
    `store: ${verb} ${s.deadLists} shared blob list(s) no kept snapshot names (${formatBytes(s.deadListBytes)})`,
    `store: ${dryRun ? 'would repack' : 'repacked'} ${s.repackPacks} mostly dead pack(s) (${formatBytes(s.repackBytes)})${dryRun ? '' : ` into ${s.newPacks} new one(s)`}`,
  ];
  return `${lines.join('\n')}\n`;
}

/**
 * Jobs made from schedule labels exist only in `serve`; their snapshots (at the top-level target, named
 * `label-…` in the manifest) are pruned here with the top-level retention, as `serve` does after each run.
 */
async function labelJobs(settings: Settings, log: Logger): Promise<Job[]> {
  const { createBackend } = await import('../storage/index.js');
  const { jobOf, listSnapshots } = await import('../archive/catalog.js');
  const { LABEL_JOB_PREFIX } = await import('../config/jobs.js');
  const backend = createBackend(settings.config.target);
  try {
    const configured = new Set(settings.jobs.map((j) => j.name));
    const names = new Set(
      (await listSnapshots(backend))
        .flatMap((e) => (e.manifest ? [jobOf(e.manifest)] : []))
        .filter((n) => n.startsWith(LABEL_JOB_PREFIX) && !configured.has(n)),
    );
    return [...names].sort().map((name) => ({ name, config: settings.config, source: 'label' as const }));
  } catch (err) {
    log.warn({ step: 'prune' }, `cannot list the label jobs' snapshots: ${(err as Error).message}`);
    return [];
  } finally {
    backend.close?.();
  }
}

/** On a terminal the table fits its width (reasons wrap, the time goes first: the id holds it too). */
function decisionsText(decisions: Decision[]): string {
  const width = terminalWidth();
  if (!width || decisions.length === 0) return describeDecisions(decisions);
  const kept = decisions.filter((d) => d.keep).length;
  const rows = decisionRows(decisions);
  const body = table(DECISION_HEADERS, rows, { width, wrap: 3, drop: [1] });
  return `${body}\n\n${kept} kept, ${decisions.length - kept} forgotten\n`;
}

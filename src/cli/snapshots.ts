import type { Command } from 'commander';
import type { SnapshotEntry } from '../archive/catalog.js';
import { formatBytes, formatDuration, table, terminalWidth } from './output.js';

export function snapshotRows(entries: SnapshotEntry[]): string[][] {
  return entries.map((s) => [
    s.id,
    s.time.toISOString().replace('.000Z', 'Z'),
    s.manifest?.kind ?? '-',
    s.manifest ? s.manifest.volumes.map((v) => v.name).join(',') : '-',
    formatBytes(s.storedBytes),
    s.manifest ? formatDuration(s.manifest.timings.totalMs) : '-',
    s.status,
  ]);
}

export const SNAPSHOT_HEADERS = ['ID', 'TIME (UTC)', 'KIND', 'VOLUMES', 'STORED', 'DURATION', 'STATUS'];

export function registerSnapshots(program: Command): void {
  program
    .command('snapshots')
    .description('list the snapshots at the target, newest first')
    .option('--json', 'machine-readable output')
    .option('--job <name>', 'only this job’s snapshots (at its target)')
    .action(async (opts: { json?: boolean; job?: string }) => {
      const { entriesOfJob, jobOf, listSnapshots } = await import('../archive/catalog.js');
      const { openContext } = await import('./context.js');
      const ctx = await openContext({ needsDocker: false, job: opts.job, json: opts.json });
      try {
        const entries = entriesOfJob(await listSnapshots(ctx.backend), opts.job);
        if (opts.json) {
          const out = entries.map((s) => ({
            id: s.id,
            time: s.time.toISOString(),
            status: s.status,
            kind: s.manifest?.kind ?? null,
            job: s.manifest ? jobOf(s.manifest) : null,
            volumes:
              s.manifest?.volumes.map((v) => ({
                name: v.name,
                rawBytes: v.rawBytes,
                storedBytes: v.storedBytes,
              })) ?? [],
            storedBytes: s.storedBytes,
            durationMs: s.manifest?.timings.totalMs ?? null,
            downtimeMs: s.manifest?.timings.downtimeMs ?? null,
            error: s.error ?? null,
          }));
          process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
        } else if (entries.length === 0) {
          process.stdout.write(`no snapshots at ${ctx.backend.location}\n`);
        } else {
          // On a terminal: volumes wrap, and the time goes first if need be (the id holds it too).
          const fit = { width: terminalWidth(), wrap: 3, drop: [1] };
          process.stdout.write(`${table(SNAPSHOT_HEADERS, snapshotRows(entries), fit)}\n`);
        }
      } finally {
        await ctx.close();
      }
    });
}

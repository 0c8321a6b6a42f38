import type { Command } from 'commander';
import { SidecarError } from '../common/errors.js';
import type { VerifyReport } from '../verify/types.js';
import { table, terminalWidth } from './output.js';

interface VerifyFlags {
  all?: boolean;
  deep?: boolean;
  readData?: boolean;
  json?: boolean;
  job?: string;
}

export function verifyRows(report: VerifyReport): string[][] {
  return report.results.map((r) => [r.snapshot, r.volume, r.level, r.ok ? 'ok' : 'FAILED', r.detail]);
}

export function registerVerify(program: Command): void {
  program
    .command('verify')
    .description(
      'check snapshots without changing anything: size, sha256, decompression and every tar entry; ' +
        '--deep also restores each archive into a scratch volume and checks the database',
    )
    .argument('[snapshot]', 'snapshot id, unique id prefix, or "latest" (default)')
    .option('--all', 'every snapshot at the target (incomplete or damaged ones count as failures)')
    .option(
      '--deep',
      'restore drill: extract into scratch volumes, compare entry counts, run mariadb-check on the database',
    )
    .option(
      '--read-data',
      'incremental snapshots: download every pack they need and check every blob against its SHA-1',
    )
    .option('--json', 'print the results as JSON')
    .option('--job <name>', 'check the snapshots at this job’s target')
    .action(async (snapshotArg: string | undefined, flags: VerifyFlags) => {
      if (flags.all && snapshotArg) {
        throw new SidecarError('USAGE', 'give a snapshot or --all, not both');
      }
      const { openContext } = await import('./context.js');
      const ctx = await openContext({ needsDocker: Boolean(flags.deep), job: flags.job, json: flags.json });
      try {
        const { runVerify } = await import('../verify/run.js');
        const { collectingYoung } = await import('../common/young-gc.js');
        // Verify reads what a restore reads without its lock (it changes nothing): the same collection.
        const report = await collectingYoung(() =>
          runVerify({
            docker: ctx.docker,
            config: ctx.config,
            backend: ctx.backend,
            log: ctx.log,
            snapshot: snapshotArg,
            all: flags.all,
            deep: flags.deep,
            readData: flags.readData,
            signal: ctx.signal,
          }),
        );
        if (flags.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
        else process.stdout.write(verifyText(report));
        const failed = report.results.filter((r) => !r.ok);
        if (failed.length > 0) {
          const list = failed
            .slice(0, 5)
            .map((r) => `${r.snapshot} ${r.volume} (${r.level}): ${r.detail}`)
            .join('; ');
          // Only a missing or wrong key: the archives may be fine, the configuration is not.
          const keyOnly = failed.every((r) => r.code === 'DECRYPTION_FAILED');
          throw new SidecarError(
            keyOnly ? 'DECRYPTION_FAILED' : 'INTEGRITY_FAILED',
            `${failed.length} of ${report.results.length} checks failed: ${list}${failed.length > 5 ? '; …' : ''}`,
            keyOnly
              ? 'set BACKUP_AGE_IDENTITY(_FILE) or BACKUP_AGE_PASSPHRASE(_FILE) to the key the snapshot was encrypted for'
              : 'do not rely on the failed snapshots; take a new backup (`backup`) and verify it',
          );
        }
      } finally {
        await ctx.close();
      }
    });
}

const VERIFY_HEADERS = ['SNAPSHOT', 'VOLUME', 'LEVEL', 'RESULT', 'DETAIL'];

/** On a terminal the table fits its width: details wrap; one snapshot's id is said once, above it. */
function verifyText(report: VerifyReport): string {
  const width = terminalWidth();
  const rows = verifyRows(report);
  const ids = new Set(rows.map((r) => r[0]));
  if (width && ids.size === 1) {
    const body = table(
      VERIFY_HEADERS.slice(1),
      rows.map((r) => r.slice(1)),
      { width, wrap: 3 },
    );
    return `snapshot ${[...ids][0]}\n${body}\n`;
  }
  return `${table(VERIFY_HEADERS, rows, { width, wrap: 4 })}\n`;
}

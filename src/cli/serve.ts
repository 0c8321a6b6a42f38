import type { Command } from 'commander';
import type { Cron } from 'croner';
import type Docker from 'dockerode';
import { findSelf } from '../docker/self.js';
import { HealthState, startHealthServer } from '../observe/health.js';
import { BackupMetrics } from '../observe/metrics.js';
import { Notifier } from '../observe/notify.js';
import { BackupScheduler, parseSchedule, seedFromCatalog, staleDeadline } from '../schedule/scheduler.js';
import { openContext } from './context.js';

const DEFAULT_HEALTH_PORT = 8080;
const DEFAULT_HEALTH_HOST = '0.0.0.0';

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('run backups on BACKUP_CRON_EXPRESSION and serve /healthz and /metrics until stopped')
    .action(async () => {
      // openContext resumes whatever an interrupted run left stopped before anything else happens.
      const ctx = await openContext();
      const { config, log } = ctx;
      try {
        // An invalid schedule is a configuration error at start, not a silent "never runs".
        const cron: Cron | undefined = config.schedule ? parseSchedule(config.schedule) : undefined;
        const deadline = staleDeadline(config, cron);
        let scheduler: BackupScheduler | undefined;
        const health = new HealthState({
          ...(deadline ? { staleDeadline: deadline } : {}),
          nextRun: () => scheduler?.nextRun() ?? null,
        });
        const metrics = new BackupMetrics();
        const self = await describeSelf(ctx.docker);
        const notifier = new Notifier({
          url: config.webhookUrl,
          events: config.notifyOn,
          project: config.project ?? self.project ?? 'unknown',
          logsCommand: self.logsCommand,
          log,
        });
        scheduler = new BackupScheduler({
          ctx,
          metrics,
          health,
          notifier,
          schedule: config.schedule,
          staleEnabled: deadline !== undefined,
          // A short explicit threshold deserves checks at least twice per period (bounded in the scheduler).
          ...(config.healthStaleAfterSeconds ? { staleCheckMs: config.healthStaleAfterSeconds * 500 } : {}),
        });
        await seedFromCatalog({ ctx, health, metrics });
        const server = await startHealthServer({
          host: config.healthHost ?? DEFAULT_HEALTH_HOST,
          port: config.healthPort ?? DEFAULT_HEALTH_PORT,
          health,
          metrics,
          log,
        });
        scheduler.start();
        if (config.schedule) {
          log.info(
            {
              step: 'schedule',
              schedule: config.schedule,
              nextRun: scheduler.nextRun()?.toISOString() ?? null,
            },
            `scheduled backups on "${config.schedule}"`,
          );
        } else {
          log.info(
            { step: 'schedule' },
            'no BACKUP_CRON_EXPRESSION: nothing is scheduled; run backups with `docker exec <sidecar> moodle-backup backup`',
          );
        }
        await aborted(ctx.signal);
        log.info(
          { step: 'shutdown' },
          'stopping: waiting for a running backup to abort and resume the stack',
        );
        await scheduler.stop();
        await server.close();
        log.info({ step: 'shutdown' }, 'stopped');
      } finally {
        await ctx.close();
      }
    });
}

function aborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}

/** The compose project and how to read this sidecar's logs, for notification messages. */
async function describeSelf(docker: Docker): Promise<{ project?: string; logsCommand: string }> {
  try {
    const self = await findSelf(docker);
    if (self) {
      const info = await docker.getContainer(self.id).inspect();
      return {
        project: self.labels['com.docker.compose.project'],
        logsCommand: `docker logs ${info.Name.replace(/^\//, '')}`,
      };
    }
  } catch {
    // Only cosmetic: fall back to a generic pointer.
  }
  return { logsCommand: 'the log of `moodle-backup serve`' };
}

import type { Command } from 'commander';
import type Docker from 'dockerode';
import { SidecarError } from '../common/errors.js';
import { findSelf } from '../docker/self.js';
import { HealthState, startHealthServer } from '../observe/health.js';
import { JobsHealth } from '../observe/jobs-health.js';
import { BackupMetrics } from '../observe/metrics.js';
import { Notifier } from '../observe/notify.js';
import { OrphanWatch } from '../schedule/orphan-watch.js';
import { LabelPlanner } from '../schedule/planner.js';
import { BackendPool } from '../schedule/runner.js';
import { JobScheduler, parseSchedule } from '../schedule/scheduler.js';
import { EventsWatcher } from '../schedule/watch.js';
import { openContext } from './context.js';

const DEFAULT_HEALTH_PORT = 8080;
const DEFAULT_HEALTH_HOST = '0.0.0.0';
const RESYNC_MS = 60_000;

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description(
      'run the scheduled jobs (BACKUP_CRON_EXPRESSION, YAML jobs, schedule labels) and serve /healthz and /metrics until stopped',
    )
    .action(async () => {
      // openContext resumes whatever an interrupted run left stopped before anything else happens.
      const ctx = await openContext({ scope: 'all' });
      const { config, log, settings } = ctx;
      const backends = new BackendPool(log);
      try {
        // An invalid schedule is a configuration error at start, not a silent "never runs" (YAML jobs'
        // schedules are checked by the loader, naming jobs[i].schedule).
        if (config.schedule) parseSchedule(config.schedule).stop();
        const metrics = new BackupMetrics();
        const self = await describeSelf(ctx.docker);
        const project = config.project ?? self.project;
        const notifier = new Notifier({
          url: config.webhookUrl,
          events: config.notifyOn,
          project: project ?? 'unknown',
          logsCommand: self.logsCommand,
          log,
        });
        const health = new JobsHealth(new HealthState());
        // Declared before the scheduler, which re-plans through it after each run.
        let planner: LabelPlanner | undefined;
        const scheduler = new JobScheduler({
          deps: {
            docker: ctx.docker,
            log,
            signal: ctx.signal,
            stateDir: config.stateDir,
            metrics,
            notifier,
            backends,
            configs: [config, ...settings.jobs.map((j) => j.config)],
          },
          health,
          // A short explicit threshold deserves checks at least twice per period (bounded in the scheduler).
          ...(config.healthStaleAfterSeconds ? { staleCheckMs: config.healthStaleAfterSeconds * 500 } : {}),
          onRunDone: (job) => void planner?.plan(`run of ${job}`),
        });
        planner = new LabelPlanner({ docker: ctx.docker, settings, project, scheduler, notifier, log });
        await planner.plan('start');
        const server = await startHealthServer({
          host: config.healthHost ?? DEFAULT_HEALTH_HOST,
          port: config.healthPort ?? DEFAULT_HEALTH_PORT,
          health,
          metrics,
          log,
        });
        scheduler.start();
        logSchedules(scheduler, log);
        // A `docker exec … backup` killed beside this process is recovered within seconds, not at the next run.
        const orphans = new OrphanWatch({
          docker: ctx.docker,
          log,
          stateDir: config.stateDir,
          configs: [config, ...settings.jobs.map((j) => j.config)],
          setStackDown: (reason) => health.setStackDown(reason),
        });
        orphans.start();
        const watcher = project
          ? new EventsWatcher({
              docker: ctx.docker,
              project,
              log,
              onChange: (reason) => void planner?.plan(reason),
              onGiveUp: (err) =>
                void notifier.failure(
                  new SidecarError(
                    'DOCKER_UNAVAILABLE',
                    `Docker events are unavailable: ${(err as Error).message}`,
                    'restart the sidecar; until then label changes are seen only at each run',
                  ),
                ),
            })
          : undefined;
        watcher?.start();
        // Events can be missed (a dropped stream, a daemon hiccup): the labels are read again now and then.
        const resync = project
          ? setInterval(() => void planner?.plan('periodic re-read'), RESYNC_MS)
          : undefined;
        await aborted(ctx.signal);
        clearInterval(resync);
        log.info(
          { step: 'shutdown' },
          'stopping: waiting for a running backup to abort and resume the stack',
        );
        await watcher?.stop();
        await orphans.stop();
        await planner.idle();
        await scheduler.stop();
        await server.close();
        log.info({ step: 'shutdown' }, 'stopped');
      } finally {
        backends.close();
        await ctx.close();
      }
    });
}

function logSchedules(scheduler: JobScheduler, log: import('../observe/logger.js').Logger): void {
  const scheduled = scheduler.jobs().filter((j) => j.config.schedule);
  if (scheduled.length === 0) {
    log.info(
      { step: 'schedule' },
      'no BACKUP_CRON_EXPRESSION: nothing is scheduled; run backups with `docker exec <sidecar> moodle-backup backup`',
    );
    return;
  }
  for (const j of scheduled) {
    log.info(
      {
        step: 'schedule',
        job: j.name,
        schedule: j.config.schedule,
        volumes: j.config.volumes,
        nextRun: scheduler.nextRun()?.toISOString() ?? null,
      },
      `scheduled backups on "${j.config.schedule}"${scheduled.length > 1 || j.source !== 'implicit' ? ` (job ${j.name})` : ''}`,
    );
  }
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

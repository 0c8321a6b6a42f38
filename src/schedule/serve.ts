import type Docker from 'dockerode';
import { SidecarError } from '../common/errors.js';
import type { Settings } from '../config/jobs.js';
import type { Config } from '../config/types.js';
import { findSelf } from '../docker/self.js';
import { HealthState, startHealthServer } from '../observe/health.js';
import { JobsHealth } from '../observe/jobs-health.js';
import type { Logger } from '../observe/logger.js';
import { BackupMetrics } from '../observe/metrics.js';
import { Notifier } from '../observe/notify.js';
import { OrphanWatch } from './orphan-watch.js';
import { LabelPlanner } from './planner.js';
import type { BackendPool } from './runner.js';
import { JobScheduler, parseSchedule } from './scheduler.js';
import { EventsWatcher } from './watch.js';

const DEFAULT_HEALTH_PORT = 8080;
const DEFAULT_HEALTH_HOST = '0.0.0.0';
const RESYNC_MS = 60_000;

export interface ServeDeps {
  docker: Docker;
  config: Config;
  settings: Settings;
  log: Logger;
  signal: AbortSignal;
  backends: BackendPool;
}

/** What `serve` runs, as one thing to stop: scheduler, label planner, health server and the watchers. */
export interface Serving {
  stop(): Promise<void>;
}

/**
 * Starts `serve`: the scheduler and the label planner (jobs from env, YAML and labels), /healthz and
 * /metrics, then the watchers that keep it right while it runs (orphaned runs, Docker events, a periodic
 * re-read of the labels).
 */
export async function startServe(d: ServeDeps): Promise<Serving> {
  const { config, log } = d;
  // An invalid schedule is a configuration error at start, not a silent "never runs" (YAML jobs'
  // schedules are checked by the loader, naming jobs[i].schedule).
  if (config.schedule) parseSchedule(config.schedule).stop();
  const metrics = new BackupMetrics();
  const self = await describeSelf(d.docker);
  const project = config.project ?? self.project;
  const notifier = new Notifier({
    url: config.webhookUrl,
    events: config.notifyOn,
    project: project ?? 'unknown',
    logsCommand: self.logsCommand,
    log,
  });
  const health = new JobsHealth(new HealthState());
  const configs = [config, ...d.settings.jobs.map((j) => j.config)];
  // Declared before the scheduler, which re-plans through it after each run.
  let planner: LabelPlanner | undefined;
  const scheduler = new JobScheduler({
    deps: {
      docker: d.docker,
      log,
      signal: d.signal,
      stateDir: config.stateDir,
      metrics,
      notifier,
      backends: d.backends,
      configs,
    },
    health,
    // A short explicit threshold deserves checks at least twice per period (bounded in the scheduler).
    ...(config.healthStaleAfterSeconds ? { staleCheckMs: config.healthStaleAfterSeconds * 500 } : {}),
    onRunDone: (job) => void planner?.plan(`run of ${job}`),
  });
  planner = new LabelPlanner({ docker: d.docker, settings: d.settings, project, scheduler, notifier, log });
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
  warnOldNode(log);
  const watchers = startWatchers(d, { project, planner, notifier, health, configs });
  return {
    async stop() {
      await watchers.stop();
      await planner.idle();
      await scheduler.stop();
      await server.close();
    },
  };
}

/** What keeps `serve` right while it runs: orphaned runs recovered, label changes seen. */
function startWatchers(
  d: ServeDeps,
  p: { project?: string; planner: LabelPlanner; notifier: Notifier; health: JobsHealth; configs: Config[] },
): Serving {
  // A `docker exec … backup` killed beside this process is recovered within seconds, not at the next run.
  const orphans = new OrphanWatch({
    docker: d.docker,
    log: d.log,
    stateDir: d.config.stateDir,
    configs: p.configs,
    setStackDown: (reason) => p.health.setStackDown(reason),
  });
  orphans.start();
  const watcher = p.project
    ? new EventsWatcher({
        docker: d.docker,
        project: p.project,
        log: d.log,
        onChange: (reason) => void p.planner.plan(reason),
        onGiveUp: (err) =>
          void p.notifier.failure(
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
  const resync = p.project
    ? setInterval(() => void p.planner.plan('periodic re-read'), RESYNC_MS)
    : undefined;
  return {
    async stop() {
      clearInterval(resync);
      await watcher?.stop();
      await orphans.stop();
    },
  };
}

function logSchedules(scheduler: JobScheduler, log: Logger): void {
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

/** Said once by serve, where the AWS SDK's own stderr notice is kept out of the JSON log (cli/main.ts). */
function warnOldNode(log: Logger): void {
  if (Number(process.versions.node.split('.')[0]) >= 22) return;
  log.warn(
    { step: 'start', node: process.versions.node },
    'Node < 22: this version works with it, but AWS SDK releases after January 2027 need Node 22 (the image runs Node 22)',
  );
}

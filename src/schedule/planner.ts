import type Docker from 'dockerode';
import { describeError, SidecarError } from '../common/errors.js';
import type { Settings } from '../config/jobs.js';
import { LABELS } from '../docker/labels.js';
import { findSelf } from '../docker/self.js';
import type { Logger } from '../observe/logger.js';
import type { Notifier } from '../observe/notify.js';
import { discoverStack } from '../stack/discover.js';
import { type JobPlan, planJobs } from './label-jobs.js';
import type { JobScheduler } from './scheduler.js';

export interface PlannerOptions {
  docker: Docker;
  settings: Settings;
  /** The compose project whose labels count; undefined: labels are not read (configured jobs only). */
  project?: string;
  scheduler: JobScheduler;
  notifier: Notifier;
  log: Logger;
}

/**
 * Reads the project's labels and hands the resulting jobs to the scheduler: at start and whenever the
 * events watcher reports a changed container. Plans run one after another, never interleaved.
 */
export class LabelPlanner {
  private chain: Promise<void> = Promise.resolve();
  private reported = '';
  private planned = false;

  constructor(private readonly opts: PlannerOptions) {}

  plan(reason: string): Promise<void> {
    this.chain = this.chain.then(() =>
      this.replan(reason).catch((err: unknown) =>
        this.opts.log.error({ step: 'schedule', err }, `planning jobs failed: ${describeError(err)}`),
      ),
    );
    return this.chain;
  }

  idle(): Promise<void> {
    return this.chain;
  }

  private async replan(reason: string): Promise<void> {
    const { settings, scheduler, log, project } = this.opts;
    let plan: JobPlan = { jobs: settings.jobs, problems: [] };
    // Which containers carried a schedule label in this reading: says why a label job came or went.
    let labelled: string[] = [];
    if (project) {
      try {
        const self = await findSelf(this.opts.docker);
        const stack = await discoverStack(this.opts.docker, { project, volumes: [] }, self);
        plan = planJobs(settings, stack);
        labelled = stack.containers
          .filter((c) => c.labels[LABELS.schedule] !== undefined)
          .map((c) => `${c.name} (${c.state})`);
      } catch (err) {
        log.warn(
          { step: 'schedule', reason },
          `cannot read the labels of project ${project}: ${describeError(err)}; ${this.planned ? 'keeping the current jobs' : 'running the configured jobs only'}`,
        );
        if (this.planned) return;
      }
    }
    this.report(plan.problems);
    const changes = await scheduler.setJobs(plan.jobs);
    this.planned = true;
    const changed = [...changes.added, ...changes.changed, ...changes.removed];
    if (reason === 'start' || changed.length === 0) return;
    log.info(
      {
        step: 'schedule',
        reason,
        ...changes,
        labelled,
        jobs: plan.jobs.map((j) => ({
          job: j.name,
          schedule: j.config.schedule ?? null,
          volumes: j.config.volumes,
        })),
        nextRun: scheduler.nextRun()?.toISOString() ?? null,
      },
      `jobs re-planned after ${reason}: ${describeChanges(changes)}`,
    );
  }

  /** Each new set of label problems is logged and notified once, not at every event. */
  private report(problems: string[]): void {
    const key = problems.join('\n');
    if (key === this.reported) return;
    this.reported = key;
    if (problems.length === 0) return;
    const err = new SidecarError(
      'LABEL_INVALID',
      `invalid schedule label${problems.length > 1 ? 's' : ''}: ${problems.join('; ')}`,
      'fix the label in the compose file and recreate the container (`docker compose up -d`); nothing was stopped',
    );
    this.opts.log.error({ step: 'labels', code: err.code, problems }, describeError(err));
    void this.opts.notifier.failure(err);
  }
}

function describeChanges(c: { added: string[]; changed: string[]; removed: string[] }): string {
  const parts = [
    c.added.length ? `added ${c.added.join(', ')}` : '',
    c.changed.length ? `changed ${c.changed.join(', ')}` : '',
    c.removed.length ? `removed ${c.removed.join(', ')}` : '',
  ];
  return parts.filter(Boolean).join('; ');
}

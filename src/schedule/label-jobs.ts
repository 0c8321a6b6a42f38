import { type Job, LABEL_JOB_PREFIX, type Settings } from '../config/jobs.js';
import { LABELS } from '../docker/labels.js';
import type { Stack } from '../stack/discover.js';
import { describeLabelProblem, labelProblems } from '../stack/label-check.js';

export interface JobPlan {
  /** The configured jobs, adjusted for labels, plus one job per container with a schedule label. */
  jobs: Job[];
  /** Bad labels, one line each naming container, label and value; their containers get no job. */
  problems: string[];
}

/**
 * Jobs from `moodle-backup.schedule` labels. A container with the label gets a job `label-<service>` that
 * backs up the project's named volumes it mounts on that schedule, with the top-level settings. The label
 * overrides the default schedule for those volumes: the implicit job (no `jobs:` list) leaves them out of its
 * scheduled runs. Jobs listed under `jobs:` name their volumes explicitly and are not changed by labels.
 * Pure: `serve` calls it with a freshly discovered stack whenever Docker reports a changed container.
 */
export function planJobs(settings: Settings, stack: Stack): JobPlan {
  const problems: string[] = [];
  const labelJobs: Job[] = [];
  const selectable = new Map(stack.volumes.map((v) => [v.name, v.short]));
  for (const c of stack.containers) {
    const schedule = c.labels[LABELS.schedule];
    if (schedule === undefined) continue;
    const bad = labelProblems(c).filter((p) => p.label === LABELS.schedule);
    if (bad.length > 0) {
      problems.push(...bad.map(describeLabelProblem));
      continue;
    }
    const volumes = [...new Set(c.mounts.map((m) => selectable.get(m.volume)))]
      .filter((v): v is string => v !== undefined)
      .sort();
    if (volumes.length === 0) {
      problems.push(
        `container ${c.name}: label ${LABELS.schedule}=${JSON.stringify(schedule)}: the container mounts none of the volumes backed up (${[...selectable.values()].join(', ') || 'none'})`,
      );
      continue;
    }
    const taken = labelJobs.some((j) => j.name === `${LABEL_JOB_PREFIX}${c.service}`);
    labelJobs.push({
      name: `${LABEL_JOB_PREFIX}${taken ? c.name : c.service}`,
      config: { ...settings.config, schedule, volumes },
      source: 'label',
    });
  }
  const claimed = new Set(labelJobs.flatMap((j) => j.config.volumes));
  const configured = settings.jobs.map((job) => {
    if (job.source !== 'implicit' || claimed.size === 0) return job;
    const own = job.config.volumes.length > 0 ? job.config.volumes : stack.volumes.map((v) => v.short);
    const rest = own.filter((v) => !claimed.has(v));
    // Every volume has a label schedule now: the default schedule has nothing left to run.
    if (rest.length === 0) {
      const { schedule: _none, ...config } = job.config;
      return { ...job, config: { ...config, volumes: own } };
    }
    return { ...job, config: { ...job.config, volumes: rest } };
  });
  return { jobs: [...configured, ...labelJobs], problems };
}

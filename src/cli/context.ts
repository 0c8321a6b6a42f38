import type Docker from 'dockerode';
import { SidecarError } from '../common/errors.js';
import { type Job, LABEL_JOB_PREFIX, type Settings } from '../config/jobs.js';
import { loadSettings } from '../config/load.js';
import type { Config, Target } from '../config/types.js';
import { assertDockerAvailable, createDocker } from '../docker/client.js';
import { createLogger, type Logger } from '../observe/logger.js';
import { discardInterrupted } from '../recover/discard-interrupted.js';
import { recoverInterrupted } from '../recover/run.js';
import { type RunState, StateStore } from '../stack/state.js';
import type { Backend } from '../storage/backend.js';
import { createBackend } from '../storage/index.js';

export interface RunContext {
  /** The selected job's settings; the top-level ones when no single job is selected (`serve`, all jobs). */
  config: Config;
  /** Every job and the top-level settings. */
  settings: Settings;
  /** The job the command works on; undefined when it covers every job (see selectJob). */
  job?: Job;
  log: Logger;
  docker: Docker;
  backend: Backend & { close?: () => void };
  /** Aborted on the first SIGTERM/SIGINT; a second signal exits at once. */
  signal: AbortSignal;
  close(): Promise<void>;
}

/**
 * Everything a command needs, in the order that keeps the promise "nothing is touched before the config is
 * valid": config → logger → Docker reachable → resume what an interrupted run left stopped → backend.
 */
export async function openContext(
  opts: { needsDocker?: boolean; job?: string; scope?: JobScope; json?: boolean } = {},
): Promise<RunContext> {
  const settings = await loadSettings();
  const job = selectJob(settings, opts.job, opts.scope ?? 'one');
  const config = job?.config ?? sharedTargetConfig(settings);
  // --json is for scripts: its logs are JSON lines too, terminal or not.
  const log = createLogger({ level: config.logLevel, format: opts.json ? 'json' : config.logFormat });
  const docker = createDocker();
  let interrupted: RunState | null = null;
  if (opts.needsDocker !== false) {
    await assertDockerAvailable(docker);
    interrupted = await recoverInterrupted(docker, new StateStore(config.stateDir), log);
  }
  const backend = createBackend(config.target, {
    log: (msg: string, fields?: Record<string, unknown>) => log.warn({ step: 'storage', ...fields }, msg),
  }) as Backend & { close?: () => void };
  await discardInterrupted([config, ...settings.jobs.map((j) => j.config)], interrupted, log);
  const ac = new AbortController();
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    signals++;
    if (signals > 1) process.exit(130);
    log.warn({ signal: sig }, `${sig} received: stopping, the stack will be resumed`);
    ac.abort(new SidecarError('INTERRUPTED', `interrupted by ${sig}`));
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  return {
    config,
    settings,
    ...(job ? { job } : {}),
    log,
    docker,
    backend,
    signal: ac.signal,
    async close() {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      backend.close?.();
    },
  };
}

/** one: the command needs one job's target; all: it can loop over every job (backup, prune, serve). */
export type JobScope = 'one' | 'all';

/**
 * The job a command works on: the one named by --job, or the only one. With several jobs and no --job, a
 * command of scope 'all' covers them all (undefined); one of scope 'one' uses their target when they share
 * it, else asks for --job.
 */
export function selectJob(settings: Settings, name: string | undefined, scope: JobScope): Job | undefined {
  const names = settings.jobs.map((j) => j.name).join(', ');
  if (name !== undefined) {
    const job = settings.jobs.find((j) => j.name === name);
    // A schedule label's job runs with the top-level settings: reachable by name without `serve`.
    if (!job && name.startsWith(LABEL_JOB_PREFIX)) return { name, config: settings.config, source: 'label' };
    if (!job) throw new SidecarError('USAGE', `no job "${name}"`, `configured jobs: ${names}`);
    return job;
  }
  if (settings.jobs.length === 1) return settings.jobs[0];
  if (scope === 'one' && sharedTarget(settings) === undefined) {
    throw new SidecarError(
      'USAGE',
      `the jobs write to different targets (${names})`,
      'choose the job whose snapshots you mean with --job <name>',
    );
  }
  return undefined;
}

/** The target every job writes to, if they share one. */
function sharedTarget(settings: Settings): Target | undefined {
  const targets = new Set(settings.jobs.map((j) => JSON.stringify(j.config.target)));
  return targets.size === 1 ? settings.jobs[0]?.config.target : undefined;
}

/** The top-level settings, with the jobs' target when every job writes to the same one. */
function sharedTargetConfig(settings: Settings): Config {
  const target = sharedTarget(settings);
  return target ? { ...settings.config, target } : settings.config;
}

export { withRunLock } from '../schedule/lock.js';

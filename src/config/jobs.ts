import { CRON_HINT, cronProblem } from './cron.js';
import type { Tree } from './env.js';
import { KNOWN_KEYS } from './schema.js';
import { closest } from './suggest.js';
import type { Config } from './types.js';

/**
 * Several backup jobs in one sidecar (YAML `jobs:`). Each job resolves to a complete `Config` for one run:
 * the top-level settings (file, then environment) are the defaults and the job's keys override them. Without
 * a `jobs:` list the top-level settings are one implicit job named `default`.
 */

export type JobSource = 'implicit' | 'config' | 'label';

export interface Job {
  /** Recorded in each snapshot's manifest; retention applies per job. */
  name: string;
  /** The fully resolved settings of one run of this job. */
  config: Config;
  /** implicit: no `jobs:` list; config: an entry of `jobs:`; label: a container's schedule label. */
  source: JobSource;
}

export interface Settings {
  /** Top-level settings: the jobs' defaults, and the process-wide ones (state dir, health, webhook). */
  config: Config;
  /** At least one. */
  jobs: Job[];
}

/** The name of the implicit job; snapshots written before jobs existed (no `job` field) belong to it. */
export const DEFAULT_JOB = 'default';
/** Names of jobs made from container labels start with this; YAML jobs may not use it. */
export const LABEL_JOB_PREFIX = 'label-';
const JOB_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;

/**
 * Settings that belong to the sidecar process, not to a run: one state dir means one run lock for every
 * job; one health server, one webhook. A job may override every other top-level key.
 */
export const PROCESS_KEYS: readonly string[] = [
  'project',
  'stateDir',
  'spoolDir',
  'helperImage',
  'healthPort',
  'healthHost',
  'healthStaleAfterSeconds',
  'webhookUrl',
  'notifyOn',
  'logLevel',
  'logFormat',
];

/** Keys a job entry may have: its name and every per-run setting. */
export function jobKeys(): string[] {
  return ['name', ...KNOWN_KEYS.root.filter((k) => !PROCESS_KEYS.includes(k))];
}

/** S3 settings from generic AWS variables; they apply to a job's S3 target as defaults. */
const GENERIC_S3_KEYS = ['accessKeyId', 'secretAccessKey', 'region', 'endpoint'] as const;

export type ParseJob = (input: Tree) => { config: Config } | { problems: string[] };

export interface JobInputs {
  /** The `jobs` value of the merged file + environment input (undefined: no list). */
  raw: unknown;
  /** The merged top-level input without `jobs`. */
  top: Tree;
  /** What the environment set under `target` (generic AWS credentials reach S3 jobs from there). */
  envTarget?: Tree;
  /** Validates one job's merged input; messages name keys by their path inside the job. */
  parse: ParseJob;
}

/**
 * Resolves `jobs:` into one Config per job; problems name the offending key as `jobs[i].key`. `topValid`
 * false skips the jobs' schema checks: their inherited errors are already reported for the top level.
 */
export function resolveJobs(
  inputs: JobInputs,
  topValid: boolean,
): { entries: { name: string; config?: Config }[]; problems: string[] } {
  const { raw } = inputs;
  if (raw === undefined || raw === null) return { entries: [], problems: [] };
  if (!Array.isArray(raw))
    return { entries: [], problems: [`jobs: expected a list of jobs, received ${kind(raw)}`] };
  if (raw.length === 0)
    return { entries: [], problems: ['jobs: expected at least one job (or remove the key)'] };
  const problems: string[] = [];
  const entries: { name: string; config?: Config }[] = [];
  const seen = new Map<string, number>();
  const allowed = jobKeys();
  raw.forEach((entry: unknown, i) => {
    const at = `jobs[${i}]`;
    if (!isTree(entry)) {
      problems.push(`${at}: expected a mapping with a name and the job's settings, received ${kind(entry)}`);
      return;
    }
    const own: string[] = [];
    for (const key of Object.keys(entry)) {
      if (allowed.includes(key)) continue;
      if (PROCESS_KEYS.includes(key))
        own.push(`${at}.${key}: set for the whole sidecar, not per job (move it to the top level)`);
      else {
        const guess = closest(key, allowed);
        own.push(`${at}.${key}: unknown key${guess ? ` (did you mean ${guess}?)` : ''}`);
      }
    }
    const name = entry.name;
    if (typeof name !== 'string' || !JOB_NAME.test(name)) {
      own.push(
        `${at}.name: ${name === undefined ? 'required' : `expected lowercase letters, digits, "-" and "_" (at most 63), received ${kind(name)}`}`,
      );
    } else if (name.startsWith(LABEL_JOB_PREFIX)) {
      own.push(
        `${at}.name: "${name}" starts with "${LABEL_JOB_PREFIX}", which is reserved for jobs made from labels`,
      );
    } else if (seen.has(name)) {
      own.push(`${at}.name: "${name}" is already the name of jobs[${seen.get(name)}] (names must be unique)`);
    } else seen.set(name, i);
    if (typeof entry.schedule === 'string') {
      const bad = cronProblem(entry.schedule);
      if (bad) own.push(`${at}.schedule: "${entry.schedule}" ${bad} (${CRON_HINT})`);
    }
    problems.push(...own);
    if (own.length > 0 || !topValid || typeof name !== 'string') return;
    const parsed = inputs.parse(jobInput(inputs, entry));
    if ('problems' in parsed) problems.push(...parsed.problems.map((p) => `${at}.${p}`));
    else entries.push({ name, config: parsed.config });
  });
  return { entries, problems };
}

/** The job's keys over the top-level input: mappings are merged key by key, the target by its type. */
export function jobInput(inputs: Pick<JobInputs, 'top' | 'envTarget'>, job: Tree): Tree {
  const { name: _name, ...over } = job;
  const out: Tree = { ...inputs.top };
  for (const [key, value] of Object.entries(over)) {
    if (key === 'target') out.target = jobTarget(inputs, value);
    else if (isTree(value) && isTree(out[key])) out[key] = { ...(out[key] as Tree), ...value };
    else out[key] = value;
  }
  return out;
}

/**
 * A job target of the default target's type is merged over it (a job names just another bucket or
 * prefix); of another type it stands alone, with the generic AWS variables as defaults for S3.
 */
function jobTarget(inputs: Pick<JobInputs, 'top' | 'envTarget'>, value: unknown): unknown {
  if (!isTree(value)) return value; // for the schema to report
  const base = isTree(inputs.top.target) ? inputs.top.target : { type: 'local' };
  const type = value.type ?? base.type ?? 'local';
  if (type === (base.type ?? 'local')) return { ...base, ...value };
  const generic: Tree = {};
  if (type === 's3' && inputs.envTarget) {
    for (const k of GENERIC_S3_KEYS) if (inputs.envTarget[k] !== undefined) generic[k] = inputs.envTarget[k];
  }
  return { ...generic, ...value };
}

function isTree(v: unknown): v is Tree {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function kind(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? `${v.slice(0, 60)}…` : v);
  return String(v);
}

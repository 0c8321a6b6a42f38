import { readFile } from 'node:fs/promises';
import type { z } from 'zod';
import { SidecarError } from '../common/errors.js';
import { loadAgeForKeys } from './age-keys.js';
import { type EnvConfig, readEnv, type Tree } from './env.js';
import { DEFAULT_JOB, type ParseJob, resolveJobs, type Settings } from './jobs.js';
import { configSchema, KNOWN_KEYS } from './schema.js';
import { closest } from './suggest.js';
import type { Config } from './types.js';

/** Read when BACKUP_CONFIG is unset and the file exists. */
export const DEFAULT_CONFIG_FILE = '/etc/moodle-backup/config.yml';

const REDACTED = '[redacted]';
/** Keys whose values never appear in messages; endpoint because a URL may carry user:password@, webhookUrl a token. */
const QUIET_KEYS = new Set([
  'accessKeyId',
  'secretAccessKey',
  'endpoint',
  'webhookUrl',
  'passphrase',
  'identities',
]);
const HINT = 'Fix the settings listed; docs/configuration.md describes every variable and YAML key.';

export interface LoadOptions {
  /** Overrides DEFAULT_CONFIG_FILE (tests). */
  defaultFile?: string;
}

/**
 * defaults < YAML file < environment, validated as a whole. Every problem found is reported in one
 * SidecarError('CONFIG_INVALID') so a user fixes them in one round, not one per run.
 */
export async function loadConfig(
  env: NodeJS.ProcessEnv = process.env,
  opts: LoadOptions = {},
): Promise<Config> {
  return (await loadSettings(env, opts)).config;
}

/** The top-level settings and every job (config/jobs.ts); without `jobs:` one implicit job. */
export async function loadSettings(
  env: NodeJS.ProcessEnv = process.env,
  opts: LoadOptions = {},
): Promise<Settings> {
  const fromEnv = readEnv(env);
  const problems = [...fromEnv.errors];
  const file = await readConfigFile(fromEnv.configFile, opts.defaultFile ?? DEFAULT_CONFIG_FILE);
  if ('error' in file) {
    // Without the file's content, schema errors (e.g. a missing bucket) would only mislead.
    problems.push(file.error);
  } else {
    const { jobs: rawJobs, ...input } = merge(file.data, fromEnv);
    await loadAgeForKeys([input, rawJobs]);
    const result = configSchema.safeParse(input);
    if (!result.success) {
      problems.push(...result.error.issues.flatMap((issue) => describeIssue(issue, input, fromEnv)));
    }
    const envTarget = fromEnv.values.target;
    const jobs = resolveJobs(
      { raw: rawJobs, top: input, envTarget: isTree(envTarget) ? envTarget : undefined, parse: parseJob },
      result.success,
    );
    problems.push(...jobs.problems);
    if (result.success && problems.length === 0) {
      const config = result.data satisfies Config;
      if (jobs.entries.length === 0)
        return { config, jobs: [{ name: DEFAULT_JOB, config, source: 'implicit' }] };
      return {
        config,
        jobs: jobs.entries.map((j) => ({ name: j.name, config: j.config as Config, source: 'config' })),
      };
    }
  }
  throw new SidecarError('CONFIG_INVALID', `invalid configuration: ${problems.join('; ')}`, HINT);
}

/** A job's merged input against the same schema; its messages name keys by their path inside the job. */
const parseJob: ParseJob = (input) => {
  const result = configSchema.safeParse(input);
  if (result.success) return { config: result.data };
  const noEnv: EnvConfig = { values: {}, sources: new Map(), errors: [] };
  return { problems: result.error.issues.flatMap((issue) => describeIssue(issue, input, noEnv)) };
};

/** A copy safe to log: credentials replaced, credentials inside the endpoint URL removed. */
export function redactConfig(config: Config): Config {
  const copy = structuredClone(config);
  // The whole URL: webhook tokens usually sit in the path, not in user:password@.
  if (copy.webhookUrl !== undefined) copy.webhookUrl = REDACTED;
  if (copy.encryption?.passphrase !== undefined) copy.encryption.passphrase = REDACTED;
  if (copy.encryption) copy.encryption.identities = copy.encryption.identities.map(() => REDACTED);
  const t = copy.target;
  if (t.type === 's3') {
    if (t.accessKeyId !== undefined) t.accessKeyId = REDACTED;
    if (t.secretAccessKey !== undefined) t.secretAccessKey = REDACTED;
    if (t.endpoint !== undefined) t.endpoint = t.endpoint.replace(/^([a-z]+:\/\/)[^@/]*@/i, `$1${REDACTED}@`);
  }
  return copy;
}

type FileResult = { data: Tree } | { error: string };

async function readConfigFile(explicit: string | undefined, fallback: string): Promise<FileResult> {
  const path = explicit ?? fallback;
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    if (explicit === undefined && code === 'ENOENT') return { data: {} };
    return {
      error: `${explicit === undefined ? 'config file' : 'BACKUP_CONFIG'}: cannot read ${path} (${code})`,
    };
  }
  return parseYaml(text, path);
}

async function parseYaml(text: string, path: string): Promise<FileResult> {
  // Loaded only when there is a file: most sidecars are configured by environment alone.
  const { LineCounter, parseDocument } = await import('yaml');
  const lineCounter = new LineCounter();
  // prettyErrors off: the pretty form quotes the offending source line, which may hold a secret.
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  if (doc.errors.length > 0) {
    return {
      error: doc.errors
        .map((e) => {
          const { line, col } = lineCounter.linePos(e.pos[0]);
          return `${path}:${line}:${col}: invalid YAML: ${e.message.split('\n')[0]?.slice(0, 120)}`;
        })
        .join('; '),
    };
  }
  let data: unknown;
  try {
    data = doc.toJS();
  } catch (err) {
    // e.g. an alias bomb: yaml refuses to expand too many aliases.
    return {
      error: `${path}: invalid YAML: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`,
    };
  }
  if (data === null || data === undefined) return { data: {} };
  if (!isTree(data)) return { error: `${path}: expected a mapping of configuration keys at the top level` };
  return { data };
}

/**
 * The environment overrides the file key by key. For the target, an env variable that selects a type
 * different from the file's replaces the file's target; S3-only variables are dropped for a local target.
 */
function merge(file: Tree, fromEnv: EnvConfig): Tree {
  const { target: envTarget, retention: envRetention, encryption: envEnc, ...envTop } = fromEnv.values;
  const out: Tree = { ...file, ...envTop };
  if (isTree(envRetention)) out.retention = overlay(file.retention, envRetention);
  if (isTree(envEnc)) out.encryption = overlay(file.encryption, envEnc);

  const fileTarget = file.target;
  // A malformed file target is left as is, for the schema to report.
  if (fileTarget !== undefined && !isTree(fileTarget)) return out;
  const base = fileTarget ?? {};
  const type = fromEnv.targetType?.type ?? base.type ?? 'local';
  let envPart = isTree(envTarget) ? envTarget : {};
  if (type !== 's3') envPart = pick(envPart, KNOWN_KEYS.local);
  if (Object.keys(envPart).length === 0 && !fromEnv.targetType) return out;
  out.target =
    base.type === undefined || base.type === type ? { ...base, ...envPart, type } : { ...envPart, type };
  return out;
}

function overlay(fileValue: unknown, envValue: Tree): unknown {
  if (fileValue === undefined) return envValue;
  return isTree(fileValue) ? { ...fileValue, ...envValue } : fileValue;
}

function pick(tree: Tree, keys: readonly string[]): Tree {
  return Object.fromEntries(Object.entries(tree).filter(([k]) => keys.includes(k)));
}

function isTree(v: unknown): v is Tree {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** One message per offending key: the env variable that set it, else its path; expected vs received. */
function describeIssue(issue: z.core.$ZodIssue, input: Tree, fromEnv: EnvConfig): string[] {
  const path = issue.path.map(String);
  const label = (p: string[]) => envVarFor(p, fromEnv) ?? (p.join('.') || '(top level)');
  const value = valueAt(input, path);
  const received = describeValue(value, path);

  switch (issue.code) {
    case 'unrecognized_keys':
      return issue.keys.map((key) => {
        const guess = closest(key, knownKeysAt(path, input));
        const type = valueAt(input, ['target', 'type']);
        const where = path.join('.') === 'target' ? ` for ${type === 's3' ? 'an S3' : 'a local'} target` : '';
        return `${label([...path, key])}: unknown key${where}${guess ? ` (did you mean ${guess}?)` : ''}`;
      });
    case 'invalid_union':
      if (issue.discriminator !== undefined && 'options' in issue && issue.options) {
        const options = issue.options.map((o) => JSON.stringify(o)).join(' or ');
        return [`${label(path)}: expected ${options}, received ${received}`];
      }
      return [`${label(path)}: ${issue.message}`];
    case 'invalid_type':
      if (value === undefined) return [missing(path, fromEnv)];
      return [`${label(path)}: expected ${typeName(issue.expected)}, received ${received}`];
    case 'too_small':
    case 'too_big': {
      const bound = issue.code === 'too_small' ? issue.minimum : issue.maximum;
      if (issue.origin === 'string') return [`${label(path)}: must not be empty`];
      const op = issue.code === 'too_small' ? (issue.inclusive ? '≥' : '>') : issue.inclusive ? '≤' : '<';
      return [
        `${label(path)}: expected ${typeName(issue.origin)} ${op} ${String(bound)}, received ${received}`,
      ];
    }
    case 'invalid_value':
      return [
        `${label(path)}: expected one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}, received ${received}`,
      ];
    case 'invalid_format':
      return [`${label(path)}: ${issue.message}, received ${received}`];
    default:
      return [`${label(path)}: ${issue.message}`];
  }
}

/** The variable that set this path or a parent of it (an item of BACKUP_VOLUMES is BACKUP_VOLUMES). */
function envVarFor(path: string[], fromEnv: EnvConfig): string | undefined {
  for (let n = path.length; n > 0; n--) {
    const variable = fromEnv.sources.get(path.slice(0, n).join('.'));
    if (variable !== undefined) return variable;
  }
  return undefined;
}

function missing(path: string[], fromEnv: EnvConfig): string {
  const key = path.join('.');
  if (key === 'target.bucket') {
    const by =
      fromEnv.targetType?.type === 's3' ? ` (S3 was selected by ${fromEnv.targetType.variable})` : '';
    return `target.bucket: an S3 target needs a bucket, set AWS_S3_BUCKET_NAME or target.bucket${by}`;
  }
  return `${key}: required`;
}

function knownKeysAt(path: string[], input: Tree): readonly string[] {
  const where = path.join('.');
  if (where === '') return [...KNOWN_KEYS.root, 'jobs'];
  if (where === 'retention') return KNOWN_KEYS.retention;
  if (where === 'encryption') return KNOWN_KEYS.encryption;
  if (where === 'target')
    return valueAt(input, ['target', 'type']) === 's3' ? KNOWN_KEYS.s3 : KNOWN_KEYS.local;
  return [];
}

function valueAt(tree: Tree, path: string[]): unknown {
  let node: unknown = tree;
  for (const key of path) node = isTree(node) || Array.isArray(node) ? (node as Tree)[key] : undefined;
  return node;
}

/** A value for a message: shown for ordinary keys, only its kind for credentials. */
function describeValue(value: unknown, path: string[]): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (path.some((k) => QUIET_KEYS.has(k))) return `a ${typeof value}`;
  if (typeof value !== 'string') return String(value);
  return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value);
}

function typeName(expected: string): string {
  // Every number in the schema is an integer.
  if (expected === 'int' || expected === 'number') return 'an integer';
  if (expected === 'object') return 'a mapping';
  if (expected === 'array') return 'a list';
  return `a ${expected}`;
}

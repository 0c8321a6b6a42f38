import { readFileSync } from 'node:fs';
import {
  boolean,
  count,
  duration,
  endpointHost,
  integer,
  keys,
  list,
  notifyEvents,
  oneOf,
  type Parsed,
  partSizeMb,
  retentionDays,
  same,
  text,
} from './env-parsers.js';
import { ONE_TARGET, UNSUPPORTED_OFFEN_VARS } from './offen-unsupported.js';
import { closest } from './suggest.js';

/**
 * Environment variables → a partial config in the YAML file's shape. Accepts offen/docker-volume-backup's
 * names where they mean the same here, so an offen env file works unchanged or fails loudly; never
 * silently ignores a setting in our namespaces (BACKUP_*, AWS_S3_*).
 *
 * Values are checked for form here (integers, enums, durations) so errors name the variable; ranges and
 * cross-field rules are left to the schema, whose errors load.ts maps back to the variable via `sources`.
 */

/** A nested object in the YAML file's shape; typed loosely because paths are set from a table. */
export interface Tree {
  [key: string]: unknown;
}

export interface EnvConfig {
  /** BACKUP_CONFIG: path of the YAML file. */
  configFile?: string;
  /** Only the keys whose variables are set. */
  values: Tree;
  /** The target type an env variable chose, and which variable (for error messages). */
  targetType?: { type: 'local' | 's3'; variable: string };
  /** Dot-joined config path → the variable that set it, so schema errors can name the variable. */
  sources: Map<string, string>;
  /** One message per offending variable; never contains a secret value. */
  errors: string[];
}

interface VarSpec {
  /** Dot-joined config paths the value is written to ([] = consumed by a special rule below). */
  paths: readonly string[];
  parse: (raw: string) => Parsed;
  /** Also readable from VAR_FILE; the value is never echoed in messages. */
  secret?: boolean;
  /** Also readable from VAR_FILE, though not a secret (e.g. a file of age recipients). */
  fileOk?: boolean;
  /** Never echo the value (it may embed credentials). */
  quiet?: boolean;
  /** Setting this variable chooses the target type. */
  selects?: 'local' | 's3';
  /** Used only when no earlier variable in the table set the same path (AWS SDK precedence). */
  fallback?: boolean;
}

/**
 * Every variable read, in precedence order (a `fallback` entry yields to an earlier one on the same path).
 * docs/configuration.md mirrors this table.
 */
const VARS: Record<string, VarSpec> = {
  BACKUP_PROJECT: { paths: ['project'], parse: text },
  BACKUP_VOLUMES: { paths: ['volumes'], parse: list },
  BACKUP_MODE: { paths: ['mode'], parse: same('stop', 'pause', 'online') },
  BACKUP_STOP_DURING_BACKUP_LABEL: { paths: ['stopLabel'], parse: text },
  // offen's deprecated name for the same setting (still accepted by offen v2).
  BACKUP_STOP_CONTAINER_LABEL: { paths: ['stopLabel'], parse: text },
  BACKUP_STOP_CONTAINER_TIMEOUT: { paths: ['stopTimeoutSeconds'], parse: duration },
  BACKUP_COMPRESSION: {
    paths: ['compression'],
    parse: oneOf({ gz: 'gzip', gzip: 'gzip', zst: 'zstd', zstd: 'zstd', none: 'none' }),
  },
  BACKUP_COMPRESSION_LEVEL: { paths: ['compressionLevel'], parse: integer },
  BACKUP_SPOOL: { paths: ['spool'], parse: same('auto', 'always', 'never') },
  BACKUP_SPOOL_DIR: { paths: ['spoolDir'], parse: text },
  BACKUP_READ_PATH: { paths: ['readPath'], parse: same('auto', 'docker', 'mount') },
  BACKUP_INCREMENTAL: { paths: ['incremental'], parse: same('auto', 'off') },
  BACKUP_REUSE_ARCHIVES: { paths: ['reuseArchives'], parse: same('auto', 'off') },
  BACKUP_STORE_FRAMES: { paths: ['storeFrames'], parse: same('auto', 'on', 'off') },
  BACKUP_STATE_DIR: { paths: ['stateDir'], parse: text },
  BACKUP_HELPER_IMAGE: { paths: ['helperImage'], parse: text },
  BACKUP_CRON_EXPRESSION: { paths: ['schedule'], parse: text },
  BACKUP_HEALTH_PORT: { paths: ['healthPort'], parse: count },
  BACKUP_HEALTH_HOST: { paths: ['healthHost'], parse: text },
  BACKUP_HEALTH_STALE_AFTER: { paths: ['healthStaleAfterSeconds'], parse: duration },
  BACKUP_WEBHOOK_URL: { paths: ['webhookUrl'], parse: text, secret: true },
  BACKUP_NOTIFY_ON: { paths: ['notifyOn'], parse: notifyEvents },
  BACKUP_AGE_RECIPIENTS: { paths: ['encryption.recipients'], parse: keys, fileOk: true },
  // offen's name for the same setting.
  AGE_PUBLIC_KEYS: { paths: ['encryption.recipients'], parse: keys, fileOk: true },
  BACKUP_AGE_PASSPHRASE: { paths: ['encryption.passphrase'], parse: text, secret: true },
  // offen's name for the same setting.
  AGE_PASSPHRASE: { paths: ['encryption.passphrase'], parse: text, secret: true },
  BACKUP_AGE_IDENTITY: { paths: ['encryption.identities'], parse: keys, secret: true },
  BACKUP_LOG_FORMAT: { paths: ['logFormat'], parse: same('auto', 'json', 'human') },
  LOG_LEVEL: { paths: ['logLevel'], parse: same('trace', 'debug', 'info', 'warn', 'error', 'fatal') },

  BACKUP_KEEP_LAST: { paths: ['retention.keepLast'], parse: count },
  BACKUP_KEEP_HOURLY: { paths: ['retention.keepHourly'], parse: count },
  BACKUP_KEEP_DAILY: { paths: ['retention.keepDaily'], parse: count },
  BACKUP_KEEP_WEEKLY: { paths: ['retention.keepWeekly'], parse: count },
  BACKUP_KEEP_MONTHLY: { paths: ['retention.keepMonthly'], parse: count },
  BACKUP_KEEP_YEARLY: { paths: ['retention.keepYearly'], parse: count },
  BACKUP_RETENTION_DAYS: { paths: ['retention.keepWithinDays'], parse: retentionDays },

  BACKUP_ARCHIVE: { paths: ['target.path'], parse: text, selects: 'local' },

  AWS_S3_BUCKET_NAME: { paths: ['target.bucket'], parse: text, selects: 's3' },
  AWS_S3_PATH: { paths: ['target.prefix'], parse: text, selects: 's3' },
  AWS_S3_PATH_STYLE: { paths: ['target.forcePathStyle'], parse: boolean, selects: 's3' },
  AWS_S3_CHECKSUMS: {
    paths: ['target.requestChecksumCalculation', 'target.responseChecksumValidation'],
    parse: same('when_supported', 'when_required'),
    selects: 's3',
  },
  AWS_S3_PART_SIZE_MB: { paths: ['target.partSize'], parse: partSizeMb, selects: 's3' },
  // offen's name for the same setting, also in MB.
  AWS_PART_SIZE: { paths: ['target.partSize'], parse: partSizeMb, selects: 's3' },
  AWS_S3_QUEUE_SIZE: { paths: ['target.queueSize'], parse: count, selects: 's3' },
  AWS_S3_REQUEST_TIMEOUT: { paths: ['target.requestTimeoutSeconds'], parse: duration, selects: 's3' },
  // Generic AWS variables: other tools set them too, so they apply to an S3 target but do not select one.
  AWS_ENDPOINT: { paths: ['target.endpoint'], parse: endpointHost, quiet: true },
  AWS_ENDPOINT_PROTO: { paths: [], parse: same('https', 'http') },
  AWS_REGION: { paths: ['target.region'], parse: text },
  AWS_DEFAULT_REGION: { paths: ['target.region'], parse: text, fallback: true },
  AWS_ACCESS_KEY_ID: { paths: ['target.accessKeyId'], parse: text, secret: true },
  AWS_SECRET_ACCESS_KEY: { paths: ['target.secretAccessKey'], parse: text, secret: true },
};

export const SECRET_VARS: readonly string[] = Object.keys(VARS).filter((n) => VARS[n]?.secret);
/** Variables that may also be given as VAR_FILE. */
export const FILE_VARS: readonly string[] = Object.keys(VARS).filter(
  (n) => VARS[n]?.secret || VARS[n]?.fileOk,
);

/** Every name this tool reads, for suggestions and docs. */
export const KNOWN_VARS: readonly string[] = [
  'BACKUP_CONFIG',
  ...Object.keys(VARS),
  ...FILE_VARS.map((n) => `${n}_FILE`),
];

/** Namespaces we own: any unknown name in them is a typo or an unsupported setting, never ignored. */
const OWN_PREFIXES = /^(BACKUP_|AWS_S3_)/;

export function readEnv(env: NodeJS.ProcessEnv): EnvConfig {
  const out: EnvConfig = { values: {}, sources: new Map(), errors: [] };
  const setBy = new Map<string, string>();
  const selectors: { type: 'local' | 's3'; variable: string }[] = [];

  for (const [name, spec] of Object.entries(VARS)) {
    const raw = readVar(env, name, spec.secret === true || spec.fileOk === true, out.errors);
    if (raw === undefined) continue;
    const parsed = spec.parse(raw);
    if (!parsed.ok) {
      const received = spec.secret || spec.quiet ? '' : `, received ${JSON.stringify(truncate(raw))}`;
      out.errors.push(`${name}: expected ${parsed.expected}${received}`);
      continue;
    }
    const earlier = spec.paths.map((p) => setBy.get(p)).find((v) => v !== undefined);
    if (earlier !== undefined) {
      if (!spec.fallback)
        out.errors.push(`${name}: set only one of ${earlier} and ${name} (they mean the same)`);
      continue;
    }
    for (const path of spec.paths) {
      setPath(out.values, path, parsed.value);
      setBy.set(path, name);
      out.sources.set(path, name);
    }
    if (spec.selects) selectors.push({ type: spec.selects, variable: name });
  }

  selectTarget(out, selectors);
  applyEndpointProto(env, out);
  const configFile = env.BACKUP_CONFIG;
  if (configFile) out.configFile = configFile;
  out.errors.push(...checkNames(env));
  return out;
}

/** One of VAR / VAR_FILE (secrets only); '' counts as unset, as compose templates often leave keys empty. */
function readVar(
  env: NodeJS.ProcessEnv,
  name: string,
  secret: boolean,
  errors: string[],
): string | undefined {
  const direct = env[name] || undefined;
  const file = secret ? env[`${name}_FILE`] || undefined : undefined;
  if (file === undefined) return direct;
  if (direct !== undefined) {
    errors.push(`${name} and ${name}_FILE are both set (set only one)`);
    return undefined;
  }
  let content: string;
  try {
    content = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    errors.push(`${name}_FILE: cannot read ${file} (${code})`);
    return undefined;
  }
  // Files written by `echo` or editors end in a newline that is not part of the secret.
  const value = content.replace(/\r?\n$/, '');
  if (value === '') {
    errors.push(`${name}_FILE: ${file} is empty`);
    return undefined;
  }
  return value;
}

/** The first selecting variable names the type (AWS_S3_BUCKET_NAME comes first among the S3 ones). */
function selectTarget(out: EnvConfig, selectors: { type: 'local' | 's3'; variable: string }[]): void {
  const [first] = selectors;
  if (!first) return;
  const local = selectors.filter((s) => s.type === 'local').map((s) => s.variable);
  const s3 = selectors.filter((s) => s.type === 's3').map((s) => s.variable);
  if (local.length > 0 && s3.length > 0) {
    out.errors.push(`${[...local, ...s3].join(', ')}: ${ONE_TARGET}, not both`);
    return;
  }
  out.targetType = s3.length > 0 ? { type: 's3', variable: s3[0] as string } : first;
}

/** offen's AWS_ENDPOINT + AWS_ENDPOINT_PROTO → one URL. offen's default endpoint means "AWS" here too. */
function applyEndpointProto(env: NodeJS.ProcessEnv, out: EnvConfig): void {
  const target = out.values.target as Tree | undefined;
  const host = target?.endpoint;
  if (typeof host !== 'string' || !target) return;
  const parsed = VARS.AWS_ENDPOINT_PROTO?.parse(env.AWS_ENDPOINT_PROTO || 'https');
  if (!parsed?.ok) {
    delete target.endpoint; // the bad protocol is already reported
    return;
  }
  const proto = parsed.value as string;
  if (host === 's3.amazonaws.com' && proto === 'https') {
    delete target.endpoint;
    return;
  }
  target.endpoint = `${proto}://${host}`;
}

/** Errors for unsupported offen variables and unknown names in our namespaces. */
function checkNames(env: NodeJS.ProcessEnv): string[] {
  const errors: string[] = [];
  const known = new Set(KNOWN_VARS);
  for (const name of Object.keys(env).sort()) {
    if (!env[name] || known.has(name)) continue;
    const base = name.replace(/_FILE$/, '');
    const instead = UNSUPPORTED_OFFEN_VARS[name] ?? UNSUPPORTED_OFFEN_VARS[base];
    if (instead !== undefined) {
      errors.push(`${name}: offen/docker-volume-backup setting not supported by moodle-backup (${instead})`);
    } else if (!OWN_PREFIXES.test(name)) {
      // Not ours: other programs' variables pass through untouched.
    } else if (base !== name && known.has(base)) {
      errors.push(`${name}: the _FILE form is read only for ${FILE_VARS.join(', ')}; set ${base} directly`);
    } else {
      const guess = closest(name, KNOWN_VARS);
      errors.push(`${name}: unknown variable${guess ? ` (did you mean ${guess}?)` : ''}`);
    }
  }
  return errors;
}

function setPath(tree: Tree, path: string, value: unknown): void {
  const keys = path.split('.');
  let node = tree;
  for (const key of keys.slice(0, -1)) {
    node[key] ??= {};
    node = node[key] as Tree;
  }
  node[keys[keys.length - 1] as string] = value;
}

function truncate(s: string, max = 60): string {
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

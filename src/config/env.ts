import { readFileSync } from 'node:fs';
import { splitKeys } from '../archive/encryption.js';

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

type Parsed = { ok: true; value: unknown } | { ok: false; expected: string };

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

const MiB = 1024 * 1024;

const text = (raw: string): Parsed => ({ ok: true, value: raw });

const oneOf =
  (values: Record<string, string>) =>
  (raw: string): Parsed => {
    const v = values[raw.trim().toLowerCase()];
    return v === undefined
      ? { ok: false, expected: `one of ${Object.keys(values).join(', ')}` }
      : { ok: true, value: v };
  };

const same = (...values: string[]) => oneOf(Object.fromEntries(values.map((v) => [v, v])));

function count(raw: string): Parsed {
  const t = raw.trim();
  const n = Number(t);
  return /^\d+$/.test(t) && Number.isSafeInteger(n)
    ? { ok: true, value: n }
    : { ok: false, expected: 'an integer ≥ 0' };
}

/** Any integer; its range depends on the codec and is checked by the schema. */
function integer(raw: string): Parsed {
  const t = raw.trim();
  return /^-?\d+$/.test(t) ? { ok: true, value: Number(t) } : { ok: false, expected: 'an integer' };
}

/** offen's BACKUP_RETENTION_DAYS defaults to -1 ("no pruning"); -1 means "off" here too. */
function retentionDays(raw: string): Parsed {
  if (raw.trim() === '-1') return { ok: true, value: 0 };
  const r = count(raw);
  return r.ok ? r : { ok: false, expected: 'an integer ≥ 0 (or -1 for off)' };
}

function partSizeMb(raw: string): Parsed {
  const r = count(raw);
  return r.ok && (r.value as number) >= 5
    ? { ok: true, value: (r.value as number) * MiB }
    : { ok: false, expected: 'an integer number of MiB ≥ 5 (S3 minimum part size)' };
}

/** Go's strconv.ParseBool, which offen uses. */
const bool = oneOf({ true: 'true', t: 'true', '1': 'true', false: 'false', f: 'false', '0': 'false' });
const boolean = (raw: string): Parsed => {
  const r = bool(raw);
  return r.ok ? { ok: true, value: r.value === 'true' } : { ok: false, expected: 'true or false' };
};

/** age keys: comma, space or newline separated; `#` comment lines as in age's key files. */
function keys(raw: string): Parsed {
  return { ok: true, value: splitKeys(raw) };
}

function list(raw: string): Parsed {
  return { ok: true, value: raw.split(',').flatMap((s) => (s.trim() ? [s.trim()] : [])) };
}

/** offen's AWS_ENDPOINT is host[:port]; the protocol comes from AWS_ENDPOINT_PROTO. */
function endpointHost(raw: string): Parsed {
  const t = raw.trim();
  return /^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:\d{1,5})?$/.test(t)
    ? { ok: true, value: t }
    : {
        ok: false,
        expected: 'host[:port] without protocol or path (set the protocol in AWS_ENDPOINT_PROTO)',
      };
}

const GO_UNITS_NS: Record<string, number> = {
  ns: 1,
  us: 1e3,
  µs: 1e3,
  μs: 1e3,
  ms: 1e6,
  s: 1e9,
  m: 60e9,
  h: 3600e9,
};

/**
 * A Go time.Duration string ('90s', '5m', '1m30s', '1.5h') as whole seconds, rounded up so the container
 * never gets less time than asked. A bare integer is taken as seconds (offen would reject it).
 */
export function parseGoDuration(raw: string): number | undefined {
  const t = raw.trim().replace(/^\+/, '');
  if (/^\d+$/.test(t)) return Number(t);
  if (!/^((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+$/.test(t)) return undefined;
  let ns = 0;
  for (const m of t.matchAll(/(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/g)) {
    ns += Math.round(Number(m[1]) * (GO_UNITS_NS[m[2] as string] as number));
  }
  return Math.ceil(ns / 1e9);
}

/** BACKUP_NOTIFY_ON: 'failure,success,stale', any subset, any case. */
function notifyEvents(raw: string): Parsed {
  const events = raw.split(',').flatMap((s) => (s.trim() ? [s.trim().toLowerCase()] : []));
  return events.every((e) => e === 'failure' || e === 'success' || e === 'stale')
    ? { ok: true, value: [...new Set(events)] }
    : { ok: false, expected: 'a comma-separated list of failure, success, stale' };
}

function duration(raw: string): Parsed {
  const s = parseGoDuration(raw);
  return s === undefined
    ? { ok: false, expected: "a duration such as '90s', '5m' or '1m30s' (or whole seconds)" }
    : { ok: true, value: s };
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

const ONE_TARGET =
  'moodle-backup writes to one target: a local directory (BACKUP_ARCHIVE) or S3 (AWS_S3_BUCKET_NAME)';
const NO_NOTIFY =
  'shoutrrr URLs and e-mail are not built in: set BACKUP_WEBHOOK_URL for JSON webhooks, or alert on the exit status or on the error code in the JSON logs';
const NO_ENCRYPT =
  'GPG is not supported: encrypt with age instead (BACKUP_AGE_RECIPIENTS or BACKUP_AGE_PASSPHRASE)';
const NO_HOOKS = 'exec labels are not supported';

/**
 * offen settings that have no equivalent here, with what to do instead. Listed by exact name (an offen
 * `_FILE` variant is matched too); a prefix match would catch unrelated variables such as SSH_AUTH_SOCK.
 */
export const UNSUPPORTED_OFFEN_VARS: Readonly<Record<string, string>> = {
  BACKUP_SOURCES:
    'volumes are read through Docker, not from mounts under /backup: list them in BACKUP_VOLUMES',
  BACKUP_FILENAME: 'snapshot names are chosen by moodle-backup so that retention and restore can find them',
  BACKUP_FILENAME_EXPAND: 'snapshot names are chosen by moodle-backup',
  BACKUP_LATEST_SYMLINK: 'snapshot names are chosen by moodle-backup: no "latest" link is kept',
  BACKUP_PRUNING_PREFIX: 'give moodle-backup a location of its own with AWS_S3_PATH or BACKUP_ARCHIVE',
  BACKUP_PRUNING_LEEWAY: 'retention is calendar based: see BACKUP_KEEP_* and BACKUP_RETENTION_DAYS',
  BACKUP_SKIP_BACKENDS_FROM_PRUNE: ONE_TARGET,
  BACKUP_FROM_SNAPSHOT: 'use BACKUP_MODE (stop, pause or online) to get a consistent copy',
  BACKUP_EXCLUDE_REGEXP:
    'list paths per volume under `exclude` in the config file, or in the moodle-backup.exclude label',
  BACKUP_STOP_SERVICE_TIMEOUT:
    'Swarm services are not supported: BACKUP_STOP_CONTAINER_TIMEOUT applies to containers',
  GZIP_PARALLELISM: 'use BACKUP_COMPRESSION=zstd for faster compression',
  GPG_PASSPHRASE: NO_ENCRYPT,
  GPG_PUBLIC_KEY_RING: NO_ENCRYPT,
  AWS_ENDPOINT_INSECURE:
    'TLS certificates are always verified: use AWS_ENDPOINT_PROTO=http on a trusted network',
  AWS_ENDPOINT_CA_CERT: 'set NODE_EXTRA_CA_CERTS to the PEM file instead',
  AWS_STORAGE_CLASS: 'set a lifecycle rule on the bucket instead',
  AWS_IAM_ROLE_ENDPOINT:
    'leave AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY unset and the AWS SDK finds instance or task roles itself',
  EXEC_LABEL: NO_HOOKS,
  EXEC_FORWARD_OUTPUT: NO_HOOKS,
  LOCK_TIMEOUT: 'the run lock has no configurable timeout',
  NOTIFICATION_URLS: NO_NOTIFY,
  NOTIFICATION_LEVEL: NO_NOTIFY,
  EMAIL_NOTIFICATION_RECIPIENT: NO_NOTIFY,
  EMAIL_NOTIFICATION_SENDER: NO_NOTIFY,
  EMAIL_SMTP_HOST: NO_NOTIFY,
  EMAIL_SMTP_PORT: NO_NOTIFY,
  EMAIL_SMTP_USERNAME: NO_NOTIFY,
  EMAIL_SMTP_PASSWORD: NO_NOTIFY,
  ...Object.fromEntries(
    [
      'WEBDAV_URL',
      'WEBDAV_URL_INSECURE',
      'WEBDAV_PATH',
      'WEBDAV_USERNAME',
      'WEBDAV_PASSWORD',
      'SSH_HOST_NAME',
      'SSH_PORT',
      'SSH_USER',
      'SSH_PASSWORD',
      'SSH_IDENTITY_FILE',
      'SSH_IDENTITY_PASSPHRASE',
      'SSH_REMOTE_PATH',
      'AZURE_STORAGE_ACCOUNT_NAME',
      'AZURE_STORAGE_PRIMARY_ACCOUNT_KEY',
      'AZURE_STORAGE_CONNECTION_STRING',
      'AZURE_STORAGE_CONTAINER_NAME',
      'AZURE_STORAGE_PATH',
      'AZURE_STORAGE_ENDPOINT',
      'AZURE_STORAGE_ACCESS_TIER',
      'DROPBOX_REFRESH_TOKEN',
      'DROPBOX_APP_KEY',
      'DROPBOX_APP_SECRET',
      'DROPBOX_REMOTE_PATH',
      'DROPBOX_CONCURRENCY_LEVEL',
      'GOOGLE_DRIVE_CREDENTIALS_JSON',
      'GOOGLE_DRIVE_FOLDER_ID',
      'GOOGLE_DRIVE_IMPERSONATE_SUBJECT',
    ].map((name) => [name, ONE_TARGET]),
  ),
};

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

/** The candidate nearest to `name` by edit distance, if near enough to be a likely typo. */
export function closest(name: string, candidates: readonly string[]): string | undefined {
  const limit = Math.min(3, Math.max(1, Math.floor(name.length / 4)));
  let best: string | undefined;
  let bestDistance = limit + 1;
  for (const c of candidates) {
    const d = editDistance(name.toUpperCase(), c.toUpperCase());
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return best;
}

/** Levenshtein distance with adjacent transpositions counted as one edit (common typing slip). */
export function editDistance(a: string, b: string): number {
  const rows: number[][] = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  const at = (i: number, j: number) => rows[i]?.[j] ?? Number.POSITIVE_INFINITY;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        d = Math.min(d, at(i - 2, j - 2) + 1);
      (rows[i] as number[])[j] = d;
    }
  }
  return at(a.length, b.length);
}

import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isSidecarError, type SidecarError } from '../../../src/common/errors.js';
import { parseGoDuration } from '../../../src/config/env-parsers.js';
import { loadConfig, redactConfig } from '../../../src/config/load.js';
import { editDistance } from '../../../src/config/suggest.js';
import type { Config } from '../../../src/config/types.js';

const MiB = 1024 * 1024;
const SECRET = 'wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY';
const KEY_ID = 'AKIAIOSFODNN7EXAMPLE';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'config-test-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Never reads the real /etc/moodle-backup/config.yml. */
const load = (env: NodeJS.ProcessEnv, defaultFile = join(dir, 'absent.yml')) =>
  loadConfig(env, { defaultFile });

async function fail(env: NodeJS.ProcessEnv, defaultFile?: string): Promise<SidecarError> {
  try {
    await load(env, defaultFile);
  } catch (err) {
    if (isSidecarError(err, 'CONFIG_INVALID')) return err;
    throw err;
  }
  throw new Error('expected CONFIG_INVALID');
}

async function tempFile(content: string, ext = 'yml'): Promise<string> {
  const path = join(dir, `${randomUUID()}.${ext}`);
  await writeFile(path, content);
  return path;
}

const DEFAULT_RETENTION = {
  keepLast: 0,
  keepHourly: 0,
  keepDaily: 7,
  keepWeekly: 4,
  keepMonthly: 6,
  keepYearly: 3,
  keepWithinDays: 0,
  keepPreRestoreDays: 14,
  sweepGraceHours: 24,
};

const DEFAULTS: Config = {
  volumes: [],
  mode: 'stop',
  stopLabel: 'true',
  stopTimeoutSeconds: 120,
  compression: 'zstd',
  spool: 'auto',
  spoolDir: '/var/lib/moodle-backup/spool',
  readPath: 'auto',
  incremental: 'auto',
  reuseArchives: 'auto',
  storeFrames: 'auto',
  stateDir: '/var/lib/moodle-backup',
  target: { type: 'local', path: '/archive' },
  healthPort: 8080,
  healthHost: '0.0.0.0',
  retention: DEFAULT_RETENTION,
  logLevel: 'info',
};

const S3_DEFAULTS = {
  type: 's3',
  bucket: 'b',
  prefix: '',
  region: 'us-east-1',
  requestChecksumCalculation: 'when_supported',
  responseChecksumValidation: 'when_supported',
  partSize: 16 * MiB,
  queueSize: 4,
  requestTimeoutSeconds: 120,
};

describe('defaults', () => {
  it('with no file and no variables', async () => {
    expect(await load({})).toEqual(DEFAULTS);
  });

  it('ignores variables outside our namespaces', async () => {
    expect(
      await load({ PATH: '/usr/bin', HOME: '/root', SSH_AUTH_SOCK: '/tmp/a', AWS_PROFILE: 'x' }),
    ).toEqual(DEFAULTS);
  });

  it('treats empty values as unset (compose templates leave keys empty)', async () => {
    expect(await load({ AWS_S3_BUCKET_NAME: '', BACKUP_FILENAME: '', BACKUP_MODE: '' })).toEqual(DEFAULTS);
  });

  it('with an S3 bucket only', async () => {
    expect((await load({ AWS_S3_BUCKET_NAME: 'b' })).target).toEqual(S3_DEFAULTS);
  });
});

describe('environment variables', () => {
  const cases: [string, NodeJS.ProcessEnv, Record<string, unknown>][] = [
    ['BACKUP_PROJECT', { BACKUP_PROJECT: 'moodle' }, { project: 'moodle' }],
    ['BACKUP_VOLUMES', { BACKUP_VOLUMES: 'db_data, moodledata,,' }, { volumes: ['db_data', 'moodledata'] }],
    ['BACKUP_MODE', { BACKUP_MODE: 'pause' }, { mode: 'pause' }],
    ['BACKUP_STOP_DURING_BACKUP_LABEL', { BACKUP_STOP_DURING_BACKUP_LABEL: 'db' }, { stopLabel: 'db' }],
    [
      'BACKUP_STOP_CONTAINER_LABEL (offen, deprecated)',
      { BACKUP_STOP_CONTAINER_LABEL: 'db' },
      { stopLabel: 'db' },
    ],
    [
      'BACKUP_STOP_CONTAINER_TIMEOUT 5m',
      { BACKUP_STOP_CONTAINER_TIMEOUT: '5m' },
      { stopTimeoutSeconds: 300 },
    ],
    [
      'BACKUP_STOP_CONTAINER_TIMEOUT 1m30s',
      { BACKUP_STOP_CONTAINER_TIMEOUT: '1m30s' },
      { stopTimeoutSeconds: 90 },
    ],
    [
      'BACKUP_STOP_CONTAINER_TIMEOUT bare',
      { BACKUP_STOP_CONTAINER_TIMEOUT: '45' },
      { stopTimeoutSeconds: 45 },
    ],
    ['BACKUP_COMPRESSION gz', { BACKUP_COMPRESSION: 'gz' }, { compression: 'gzip' }],
    ['BACKUP_COMPRESSION gzip', { BACKUP_COMPRESSION: 'gzip' }, { compression: 'gzip' }],
    ['BACKUP_COMPRESSION zst', { BACKUP_COMPRESSION: 'zst' }, { compression: 'zstd' }],
    ['BACKUP_COMPRESSION zstd', { BACKUP_COMPRESSION: 'zstd' }, { compression: 'zstd' }],
    ['BACKUP_COMPRESSION none', { BACKUP_COMPRESSION: 'none' }, { compression: 'none' }],
    ['BACKUP_COMPRESSION_LEVEL', { BACKUP_COMPRESSION_LEVEL: '9' }, { compressionLevel: 9 }],
    [
      'BACKUP_COMPRESSION_LEVEL with gzip',
      { BACKUP_COMPRESSION: 'gz', BACKUP_COMPRESSION_LEVEL: '6' },
      { compression: 'gzip', compressionLevel: 6 },
    ],
    ['BACKUP_SPOOL', { BACKUP_SPOOL: 'never' }, { spool: 'never' }],
    ['BACKUP_SPOOL_DIR', { BACKUP_SPOOL_DIR: '/spool' }, { spoolDir: '/spool' }],
    ['BACKUP_READ_PATH', { BACKUP_READ_PATH: 'docker' }, { readPath: 'docker' }],
    ['BACKUP_INCREMENTAL', { BACKUP_INCREMENTAL: 'off' }, { incremental: 'off' }],
    ['BACKUP_REUSE_ARCHIVES', { BACKUP_REUSE_ARCHIVES: 'off' }, { reuseArchives: 'off' }],
    ['BACKUP_STORE_FRAMES', { BACKUP_STORE_FRAMES: 'on' }, { storeFrames: 'on' }],
    ['BACKUP_STATE_DIR', { BACKUP_STATE_DIR: '/state' }, { stateDir: '/state' }],
    ['BACKUP_HELPER_IMAGE', { BACKUP_HELPER_IMAGE: 'busybox:1.36' }, { helperImage: 'busybox:1.36' }],
    ['BACKUP_CRON_EXPRESSION', { BACKUP_CRON_EXPRESSION: '0 3 * * *' }, { schedule: '0 3 * * *' }],
    ['LOG_LEVEL', { LOG_LEVEL: 'debug' }, { logLevel: 'debug' }],
    ['BACKUP_HEALTH_PORT', { BACKUP_HEALTH_PORT: '9100' }, { healthPort: 9100 }],
    ['BACKUP_HEALTH_HOST', { BACKUP_HEALTH_HOST: '127.0.0.1' }, { healthHost: '127.0.0.1' }],
    [
      'BACKUP_HEALTH_STALE_AFTER 26h',
      { BACKUP_HEALTH_STALE_AFTER: '26h' },
      { healthStaleAfterSeconds: 93_600 },
    ],
    [
      'BACKUP_HEALTH_STALE_AFTER bare',
      { BACKUP_HEALTH_STALE_AFTER: '600' },
      { healthStaleAfterSeconds: 600 },
    ],
    [
      'BACKUP_WEBHOOK_URL',
      { BACKUP_WEBHOOK_URL: 'https://hooks.example.com/T0/abc' },
      { webhookUrl: 'https://hooks.example.com/T0/abc' },
    ],
    [
      'BACKUP_NOTIFY_ON (any case, duplicates dropped)',
      { BACKUP_NOTIFY_ON: 'Success, stale,success' },
      { notifyOn: ['success', 'stale'] },
    ],
    ['BACKUP_KEEP_LAST', { BACKUP_KEEP_LAST: '2' }, { retention: { ...DEFAULT_RETENTION, keepLast: 2 } }],
    [
      'BACKUP_KEEP_HOURLY',
      { BACKUP_KEEP_HOURLY: '24' },
      { retention: { ...DEFAULT_RETENTION, keepHourly: 24 } },
    ],
    ['BACKUP_KEEP_DAILY', { BACKUP_KEEP_DAILY: '0' }, { retention: { ...DEFAULT_RETENTION, keepDaily: 0 } }],
    [
      'BACKUP_KEEP_WEEKLY',
      { BACKUP_KEEP_WEEKLY: '8' },
      { retention: { ...DEFAULT_RETENTION, keepWeekly: 8 } },
    ],
    [
      'BACKUP_KEEP_MONTHLY',
      { BACKUP_KEEP_MONTHLY: '12' },
      { retention: { ...DEFAULT_RETENTION, keepMonthly: 12 } },
    ],
    [
      'BACKUP_KEEP_YEARLY',
      { BACKUP_KEEP_YEARLY: '10' },
      { retention: { ...DEFAULT_RETENTION, keepYearly: 10 } },
    ],
    [
      'BACKUP_RETENTION_DAYS',
      { BACKUP_RETENTION_DAYS: '30' },
      { retention: { ...DEFAULT_RETENTION, keepWithinDays: 30 } },
    ],
    [
      'BACKUP_RETENTION_DAYS -1 (offen: off)',
      { BACKUP_RETENTION_DAYS: '-1' },
      { retention: { ...DEFAULT_RETENTION, keepWithinDays: 0 } },
    ],
    ['BACKUP_ARCHIVE', { BACKUP_ARCHIVE: '/backups' }, { target: { type: 'local', path: '/backups' } }],
    [
      'AWS_S3_PATH strips slashes',
      { AWS_S3_BUCKET_NAME: 'b', AWS_S3_PATH: '/a/b/' },
      { target: { prefix: 'a/b' } },
    ],
    [
      'AWS_ENDPOINT + AWS_ENDPOINT_PROTO',
      { AWS_S3_BUCKET_NAME: 'b', AWS_ENDPOINT: 'minio:9000', AWS_ENDPOINT_PROTO: 'http' },
      { target: { endpoint: 'http://minio:9000' } },
    ],
    [
      'AWS_ENDPOINT defaults to https',
      { AWS_S3_BUCKET_NAME: 'b', AWS_ENDPOINT: 's3.example.com' },
      { target: { endpoint: 'https://s3.example.com' } },
    ],
    [
      'AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY',
      { AWS_S3_BUCKET_NAME: 'b', AWS_ACCESS_KEY_ID: KEY_ID, AWS_SECRET_ACCESS_KEY: SECRET },
      { target: { accessKeyId: KEY_ID, secretAccessKey: SECRET } },
    ],
    [
      'AWS_REGION',
      { AWS_S3_BUCKET_NAME: 'b', AWS_REGION: 'eu-central-1' },
      { target: { region: 'eu-central-1' } },
    ],
    [
      'AWS_DEFAULT_REGION',
      { AWS_S3_BUCKET_NAME: 'b', AWS_DEFAULT_REGION: 'eu-west-1' },
      { target: { region: 'eu-west-1' } },
    ],
    [
      'AWS_REGION wins over AWS_DEFAULT_REGION',
      { AWS_S3_BUCKET_NAME: 'b', AWS_REGION: 'eu-central-1', AWS_DEFAULT_REGION: 'eu-west-1' },
      { target: { region: 'eu-central-1' } },
    ],
    [
      'AWS_S3_PATH_STYLE',
      { AWS_S3_BUCKET_NAME: 'b', AWS_S3_PATH_STYLE: 'true' },
      { target: { forcePathStyle: true } },
    ],
    [
      'AWS_S3_PATH_STYLE=false',
      { AWS_S3_BUCKET_NAME: 'b', AWS_S3_PATH_STYLE: 'false' },
      { target: { forcePathStyle: false } },
    ],
    [
      'AWS_S3_CHECKSUMS sets both',
      { AWS_S3_BUCKET_NAME: 'b', AWS_S3_CHECKSUMS: 'when_required' },
      {
        target: { requestChecksumCalculation: 'when_required', responseChecksumValidation: 'when_required' },
      },
    ],
    [
      'AWS_S3_PART_SIZE_MB',
      { AWS_S3_BUCKET_NAME: 'b', AWS_S3_PART_SIZE_MB: '64' },
      { target: { partSize: 64 * MiB } },
    ],
    [
      'AWS_PART_SIZE (offen, MB)',
      { AWS_S3_BUCKET_NAME: 'b', AWS_PART_SIZE: '32' },
      { target: { partSize: 32 * MiB } },
    ],
    ['AWS_S3_QUEUE_SIZE', { AWS_S3_BUCKET_NAME: 'b', AWS_S3_QUEUE_SIZE: '8' }, { target: { queueSize: 8 } }],
  ];

  it.each(cases)('%s', async (_name, env, expected) => {
    expect(await load(env)).toMatchObject(expected);
  });

  it('AWS_S3_BUCKET_NAME selects the S3 target', async () => {
    expect((await load({ AWS_S3_BUCKET_NAME: 'backups' })).target).toMatchObject({
      type: 's3',
      bucket: 'backups',
    });
  });

  it("offen's default AWS_ENDPOINT means AWS itself", async () => {
    const target = (await load({ AWS_S3_BUCKET_NAME: 'b', AWS_ENDPOINT: 's3.amazonaws.com' })).target;
    expect(target.type === 's3' && target.endpoint).toBeUndefined();
  });

  it('generic AWS variables do not turn a local target into S3', async () => {
    const env = { AWS_REGION: 'eu-west-1', AWS_ACCESS_KEY_ID: KEY_ID, AWS_SECRET_ACCESS_KEY: SECRET };
    expect((await load(env)).target).toEqual({ type: 'local', path: '/archive' });
  });
});

describe('go durations', () => {
  it.each([
    ['90s', 90],
    ['5m', 300],
    ['1m30s', 90],
    ['1h', 3600],
    ['1.5s', 2],
    ['500ms', 1],
    ['0', 0],
    ['120', 120],
    ['abc', undefined],
    ['5 m', undefined],
    ['-5m', undefined],
    ['5d', undefined],
  ])('%s → %s', (input, seconds) => {
    expect(parseGoDuration(input)).toBe(seconds);
  });
});

describe('_FILE forms', () => {
  it.each([
    ['AWS_SECRET_ACCESS_KEY', 'secretAccessKey', `${SECRET}\n`],
    ['AWS_ACCESS_KEY_ID', 'accessKeyId', `${KEY_ID}\r\n`],
  ])('%s_FILE is read and its trailing newline trimmed', async (name, key, content) => {
    const other =
      name === 'AWS_ACCESS_KEY_ID' ? { AWS_SECRET_ACCESS_KEY: SECRET } : { AWS_ACCESS_KEY_ID: KEY_ID };
    const file = await tempFile(content, 'secret');
    const target = (await load({ AWS_S3_BUCKET_NAME: 'b', [`${name}_FILE`]: file, ...other })).target;
    expect(target).toMatchObject({ [key]: content.trimEnd() });
  });

  it('BACKUP_WEBHOOK_URL_FILE is read like the S3 secrets', async () => {
    const file = await tempFile('https://hooks.example.com/T0/secret-token\n', 'secret');
    expect((await load({ BACKUP_WEBHOOK_URL_FILE: file })).webhookUrl).toBe(
      'https://hooks.example.com/T0/secret-token',
    );
  });

  it('an unreadable file is an error naming the variable', async () => {
    const missing = join(dir, 'no-such-secret');
    const err = await fail({
      AWS_S3_BUCKET_NAME: 'b',
      AWS_ACCESS_KEY_ID: KEY_ID,
      AWS_SECRET_ACCESS_KEY_FILE: missing,
    });
    expect(err.message).toContain('AWS_SECRET_ACCESS_KEY_FILE');
    expect(err.message).toContain(missing);
  });

  it('an empty file is an error', async () => {
    const file = await tempFile('\n', 'secret');
    const err = await fail({
      AWS_S3_BUCKET_NAME: 'b',
      AWS_ACCESS_KEY_ID: KEY_ID,
      AWS_SECRET_ACCESS_KEY_FILE: file,
    });
    expect(err.message).toContain('AWS_SECRET_ACCESS_KEY_FILE');
  });

  it.each(['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY'])(
    '%s and %s_FILE both set is an error',
    async (name) => {
      const file = await tempFile('from-file', 'secret');
      const err = await fail({ AWS_S3_BUCKET_NAME: 'b', [name]: 'direct', [`${name}_FILE`]: file });
      expect(err.message).toContain(`${name} and ${name}_FILE are both set`);
    },
  );

  it('the _FILE form of a non-secret variable is an error', async () => {
    const err = await fail({ BACKUP_ARCHIVE_FILE: '/run/secrets/archive' });
    expect(err.message).toContain('BACKUP_ARCHIVE_FILE');
    expect(err.message).toContain('set BACKUP_ARCHIVE directly');
  });
});

describe('typo protection', () => {
  it.each([
    ['BACKUP_KEEP_DAYLY', 'BACKUP_KEEP_DAILY'],
    ['BACKUP_COMPRESION', 'BACKUP_COMPRESSION'],
    ['BACKUP_VOLUME', 'BACKUP_VOLUMES'],
    ['BACKUP_STATEDIR', 'BACKUP_STATE_DIR'],
    ['AWS_S3_PATHSTYLE', 'AWS_S3_PATH_STYLE'],
    ['AWS_S3_BUCKET_NAEM', 'AWS_S3_BUCKET_NAME'],
    ['AWS_S3_ENDPOINT', 'AWS_ENDPOINT'],
  ])('%s → did you mean %s?', async (typo, intended) => {
    const err = await fail({ [typo]: 'x' });
    expect(err.message).toContain(`${typo}: unknown variable (did you mean ${intended}?)`);
  });

  it.each(['BACKUP_SOMETHING_ELSE', 'AWS_S3_WHATEVER_THIS_IS'])(
    '%s: unknown, no suggestion',
    async (name) => {
      const err = await fail({ [name]: 'x' });
      expect(err.message).toContain(`${name}: unknown variable`);
      expect(err.message).not.toContain('did you mean');
    },
  );

  it('the error names every offending variable at once', async () => {
    const err = await fail({ BACKUP_KEEP_DAYLY: '1', BACKUP_MODE: 'paws', BACKUP_FILENAME: 'x' });
    for (const name of ['BACKUP_KEEP_DAYLY', 'BACKUP_MODE', 'BACKUP_FILENAME'])
      expect(err.message).toContain(name);
    expect(err.hint).toContain('docs/configuration.md');
  });
});

describe('unsupported offen variables', () => {
  it.each([
    ['BACKUP_FILENAME', 'snapshot names'],
    ['BACKUP_LATEST_SYMLINK', 'snapshot names'],
    ['GPG_PASSPHRASE', 'encrypt with age instead'],
    ['GPG_PASSPHRASE_FILE', 'encrypt with age instead'],
    ['BACKUP_SOURCES', 'BACKUP_VOLUMES'],
    ['BACKUP_PRUNING_PREFIX', 'AWS_S3_PATH'],
    ['BACKUP_FROM_SNAPSHOT', 'BACKUP_MODE'],
    ['BACKUP_EXCLUDE_REGEXP', 'moodle-backup.exclude'],
    ['BACKUP_STOP_SERVICE_TIMEOUT', 'BACKUP_STOP_CONTAINER_TIMEOUT'],
    ['GZIP_PARALLELISM', 'zstd'],
    ['WEBDAV_URL', 'one target'],
    ['SSH_HOST_NAME', 'one target'],
    ['NOTIFICATION_URLS', 'exit status'],
    ['AWS_STORAGE_CLASS', 'lifecycle'],
  ])('%s is rejected with advice', async (name, advice) => {
    const err = await fail({ [name]: 'x' });
    expect(err.message).toContain(`${name}: offen/docker-volume-backup setting not supported`);
    expect(err.message).toContain(advice);
  });
});

describe('invalid values from the environment', () => {
  it.each([
    ['BACKUP_KEEP_DAILY', 'abc', 'an integer ≥ 0'],
    ['BACKUP_KEEP_DAILY', '-1', 'an integer ≥ 0'],
    ['BACKUP_KEEP_WEEKLY', '1.5', 'an integer ≥ 0'],
    ['BACKUP_RETENTION_DAYS', '-2', 'or -1 for off'],
    ['BACKUP_MODE', 'paws', 'one of stop, pause'],
    ['BACKUP_COMPRESSION', 'bzip2', 'one of gz, gzip, zst, zstd, none'],
    ['BACKUP_COMPRESSION_LEVEL', 'high', 'an integer'],
    ['BACKUP_COMPRESSION_LEVEL', '99', '1–19 for zstd'],
    ['BACKUP_SPOOL', 'sometimes', 'one of auto, always, never'],
    ['BACKUP_READ_PATH', 'nfs', 'one of auto, docker, mount'],
    ['LOG_LEVEL', 'verbose', 'one of trace'],
    ['BACKUP_STOP_CONTAINER_TIMEOUT', 'forever', 'a duration'],
    ['BACKUP_ARCHIVE', 'relative/dir', 'absolute path'],
    ['BACKUP_STATE_DIR', 'state', 'absolute path'],
    ['BACKUP_PROJECT', 'My Project', 'Compose project name'],
    ['BACKUP_VOLUMES', 'ok,/bad', 'Docker volume name'],
    ['AWS_S3_PART_SIZE_MB', '4', '≥ 5'],
    ['AWS_S3_QUEUE_SIZE', '0', '≥ 1'],
    ['AWS_S3_PATH_STYLE', 'yes', 'true or false'],
    ['AWS_S3_CHECKSUMS', 'always', 'one of when_supported, when_required'],
    ['AWS_ENDPOINT', 'http://minio:9000', 'AWS_ENDPOINT_PROTO'],
    ['AWS_ENDPOINT_PROTO', 'ftp', 'one of https, http'],
    ['AWS_S3_BUCKET_NAME', 'bucket/path', 'without "/"'],
    ['BACKUP_HEALTH_PORT', 'http', 'an integer ≥ 0'],
    ['BACKUP_HEALTH_PORT', '0', '≥ 1'],
    ['BACKUP_HEALTH_PORT', '70000', '≤ 65535'],
    ['BACKUP_HEALTH_STALE_AFTER', 'a day', 'a duration'],
    ['BACKUP_HEALTH_STALE_AFTER', '0s', '≥ 1'],
    ['BACKUP_NOTIFY_ON', 'failure,always', 'failure, success, stale'],
    ['BACKUP_WEBHOOK_URL', 'hooks.example.com/x', 'http:// or https:// URL'],
  ])('%s=%s', async (name, value, expected) => {
    const env: NodeJS.ProcessEnv = { [name]: value };
    if (name.startsWith('AWS_') && name !== 'AWS_S3_BUCKET_NAME') env.AWS_S3_BUCKET_NAME = 'b';
    if (name === 'AWS_ENDPOINT_PROTO') env.AWS_ENDPOINT = 'minio:9000';
    const err = await fail(env);
    expect(err.message).toMatch(new RegExp(`(^|; |: )${name}: `));
    expect(err.message).toContain(expected);
  });

  it('echoes the received value for ordinary variables', async () => {
    expect((await fail({ BACKUP_MODE: 'paws' })).message).toContain('received "paws"');
  });

  it.each([
    [
      { BACKUP_STOP_DURING_BACKUP_LABEL: 'a', BACKUP_STOP_CONTAINER_LABEL: 'b' },
      'BACKUP_STOP_CONTAINER_LABEL',
    ],
    [{ AWS_S3_BUCKET_NAME: 'b', AWS_S3_PART_SIZE_MB: '16', AWS_PART_SIZE: '16' }, 'AWS_PART_SIZE'],
  ])('two names for one setting: error', async (env, name) => {
    expect((await fail(env)).message).toContain(`${name}: set only one of`);
  });

  it('a local and an S3 target at once is an error', async () => {
    const err = await fail({ BACKUP_ARCHIVE: '/archive', AWS_S3_BUCKET_NAME: 'b' });
    expect(err.message).toContain('BACKUP_ARCHIVE, AWS_S3_BUCKET_NAME: moodle-backup writes to one target');
  });
});

describe('YAML file', () => {
  it('is read from BACKUP_CONFIG', async () => {
    const file = await tempFile('mode: pause\nvolumes: [db_data]\nretention:\n  keepDaily: 3\n');
    const config = await load({ BACKUP_CONFIG: file });
    expect(config).toMatchObject({
      mode: 'pause',
      volumes: ['db_data'],
      retention: { keepDaily: 3, keepWeekly: 4 },
    });
  });

  it('is read from the default path when it exists', async () => {
    const file = await tempFile('stopLabel: db\n');
    expect((await load({}, file)).stopLabel).toBe('db');
  });

  it('an empty file means defaults', async () => {
    expect(await load({ BACKUP_CONFIG: await tempFile('') })).toEqual(DEFAULTS);
  });

  it('a full S3 target', async () => {
    const file = await tempFile(
      [
        'target:',
        '  type: s3',
        '  bucket: b',
        '  prefix: /moodle/',
        '  endpoint: http://minio:9000',
        '  forcePathStyle: true',
        '  requestChecksumCalculation: when_required',
        `  partSize: ${8 * MiB}`,
      ].join('\n'),
    );
    expect((await load({ BACKUP_CONFIG: file })).target).toEqual({
      ...S3_DEFAULTS,
      prefix: 'moodle',
      endpoint: 'http://minio:9000',
      forcePathStyle: true,
      requestChecksumCalculation: 'when_required',
      partSize: 8 * MiB,
    });
  });

  it('health and notification keys', async () => {
    const file = await tempFile(
      [
        'healthPort: 9100',
        'healthHost: 127.0.0.1',
        'healthStaleAfterSeconds: 90000',
        'webhookUrl: https://hooks.example.com/x',
        'notifyOn: [success, stale]',
      ].join('\n'),
    );
    expect(await load({ BACKUP_CONFIG: file })).toMatchObject({
      healthPort: 9100,
      healthHost: '127.0.0.1',
      healthStaleAfterSeconds: 90_000,
      webhookUrl: 'https://hooks.example.com/x',
      notifyOn: ['success', 'stale'],
    });
    const bad = await fail({ BACKUP_CONFIG: await tempFile('notifyOn: [sucess]\nhealthPort: "x"\n') });
    expect(bad.message).toContain('notifyOn.0: expected one of "failure", "success", "stale"');
    expect(bad.message).toContain('healthPort: expected an integer');
  });

  it('a missing BACKUP_CONFIG file is an error naming the variable', async () => {
    const err = await fail({ BACKUP_CONFIG: join(dir, 'nope.yml') });
    expect(err.message).toContain('BACKUP_CONFIG: cannot read');
    expect(err.message).toContain('nope.yml');
  });

  it.each([
    ['foo: 1\n', 'foo: unknown key'],
    ['retention:\n  keepDayly: 3\n', 'retention.keepDayly: unknown key (did you mean keepDaily?)'],
    [
      'target:\n  type: s3\n  bucket: b\n  regon: x\n',
      'target.regon: unknown key for an S3 target (did you mean region?)',
    ],
    ['target:\n  type: local\n  bucket: b\n', 'target.bucket: unknown key for a local target'],
    ['stoplabel: db\n', 'stoplabel: unknown key (did you mean stopLabel?)'],
  ])('unknown key %j', async (yaml, expected) => {
    const err = await fail({ BACKUP_CONFIG: await tempFile(yaml) });
    expect(err.message).toContain(expected);
  });

  it.each([
    ['mode: paws\n', 'mode: expected one of "stop", "pause", "online", received "paws"'],
    ['retention:\n  keepDaily: -1\n', 'retention.keepDaily: expected an integer ≥ 0, received -1'],
    ['retention:\n  keepDaily: "7"\n', 'retention.keepDaily: expected an integer, received "7"'],
    ['stopTimeoutSeconds: 2m\n', 'stopTimeoutSeconds: expected an integer, received "2m"'],
    ['volumes: db_data\n', 'volumes: expected a list, received "db_data"'],
    ['retention: 7\n', 'retention: expected a mapping, received 7'],
    ['target:\n  type: gcs\n', 'target.type: expected "local" or "s3", received "gcs"'],
    ['target:\n  path: /x\n', 'target.type: expected "local" or "s3", received nothing'],
    [
      'target:\n  type: s3\n  bucket: b\n  partSize: 1000\n',
      `target.partSize: expected an integer ≥ ${5 * MiB}`,
    ],
    [
      'target:\n  type: s3\n  bucket: b\n  endpoint: minio:9000\n',
      'target.endpoint: expected an http:// or https://',
    ],
    ['compression: none\ncompressionLevel: 3\n', 'compressionLevel: has no effect with compression "none"'],
    ['compression: gzip\ncompressionLevel: 12\n', 'compressionLevel: expected 1–9 for gzip, received 12'],
  ])('invalid value %j', async (yaml, expected) => {
    const err = await fail({ BACKUP_CONFIG: await tempFile(yaml) });
    expect(err.message).toContain(expected);
  });

  it.each([
    ['mode: pause\nkey: [unclosed\n', ':3:1: invalid YAML'],
    ['mode: pause\nmode: stop\n', ':2:1: invalid YAML'],
    ['a: b: c\n', ':1:4: invalid YAML'],
  ])('parse error %j names the file and line', async (yaml, where) => {
    const file = await tempFile(yaml);
    expect((await fail({ BACKUP_CONFIG: file })).message).toContain(`${file}${where}`);
  });

  it('a top level that is not a mapping is an error', async () => {
    const file = await tempFile('- a\n- b\n');
    expect((await fail({ BACKUP_CONFIG: file })).message).toContain(`${file}: expected a mapping`);
  });
});

describe('precedence: defaults < file < environment', () => {
  const yaml = [
    'mode: pause',
    'stopLabel: db',
    'retention:',
    '  keepDaily: 1',
    '  keepWeekly: 2',
    'target:',
    '  type: s3',
    '  bucket: from-file',
    '  region: eu-west-1',
  ].join('\n');

  it('env overrides the file key by key, nested keys included', async () => {
    const file = await tempFile(yaml);
    const config = await load({
      BACKUP_CONFIG: file,
      BACKUP_MODE: 'stop',
      BACKUP_KEEP_WEEKLY: '9',
      AWS_S3_PATH: 'env-prefix',
      AWS_REGION: 'us-west-2',
    });
    expect(config).toMatchObject({
      mode: 'stop',
      stopLabel: 'db',
      retention: { ...DEFAULT_RETENTION, keepDaily: 1, keepWeekly: 9 },
      target: { type: 's3', bucket: 'from-file', prefix: 'env-prefix', region: 'us-west-2' },
    });
  });

  it('an env variable selecting another target type replaces the file target', async () => {
    const file = await tempFile(yaml);
    const config = await load({ BACKUP_CONFIG: file, BACKUP_ARCHIVE: '/backups', AWS_REGION: 'us-west-2' });
    expect(config.target).toEqual({ type: 'local', path: '/backups' });
  });

  it('errors on env-set values name the variable, not the key', async () => {
    const file = await tempFile(yaml);
    const err = await fail({ BACKUP_CONFIG: file, AWS_S3_QUEUE_SIZE: '0' });
    expect(err.message).toContain('AWS_S3_QUEUE_SIZE: expected an integer ≥ 1, received 0');
    expect(err.message).not.toContain('target.queueSize');
  });
});

describe('S3 target without a bucket', () => {
  it('from the file', async () => {
    const err = await fail({ BACKUP_CONFIG: await tempFile('target:\n  type: s3\n') });
    expect(err.message).toContain('target.bucket');
    expect(err.message).toContain('AWS_S3_BUCKET_NAME');
  });

  it('from S3 variables without AWS_S3_BUCKET_NAME', async () => {
    const err = await fail({ AWS_S3_PATH: 'moodle' });
    expect(err.message).toContain('target.bucket: an S3 target needs a bucket, set AWS_S3_BUCKET_NAME');
    expect(err.message).toContain('S3 was selected by AWS_S3_PATH');
  });

  it('half a key pair is an error', async () => {
    const err = await fail({ AWS_S3_BUCKET_NAME: 'b', AWS_ACCESS_KEY_ID: KEY_ID });
    expect(err.message).toContain('target.secretAccessKey: required when the other half');
  });
});

describe('secrets never leak', () => {
  const messageOf = (err: SidecarError) => `${err.message} ${err.hint ?? ''}`;

  it('not in env errors', async () => {
    const secretFile = await tempFile(`${SECRET}\n`, 'secret');
    const cases: NodeJS.ProcessEnv[] = [
      { AWS_SECRET_ACCESS_KEY: SECRET, BACKUP_MODE: 'paws', AWS_S3_QUEUE_SIZE: '0' },
      { AWS_S3_BUCKET_NAME: 'b', AWS_SECRET_ACCESS_KEY: SECRET },
      { AWS_S3_BUCKET_NAME: 'b', AWS_SECRET_ACCESS_KEY: SECRET, AWS_SECRET_ACCESS_KEY_FILE: secretFile },
      { AWS_S3_SECRET: SECRET, BACKUP_PASSWORD: SECRET, GPG_PASSPHRASE: SECRET },
      { AWS_S3_BUCKET_NAME: 'b', AWS_ENDPOINT: `http://user:${SECRET}@minio:9000` },
      { BACKUP_MODE_FILE: secretFile },
    ];
    for (const env of cases) expect(messageOf(await fail(env))).not.toContain(SECRET);
  });

  it('not in file errors', async () => {
    const cases = [
      `target:\n  type: s3\n  secretAccessKey: ${SECRET}\n`,
      'target:\n  type: s3\n  bucket: b\n  accessKeyId: 12345\n  secretAccessKey: 67890\n',
      `target:\n  type: local\n  secretAccessKey: ${SECRET}\n`,
      `target:\n  type: s3\n  bucket: b\n  endpoint: "ftp://u:${SECRET}@x"\n`,
      `secretAccessKey: ${SECRET}: oops\n`,
    ];
    for (const yaml of cases) {
      const message = messageOf(await fail({ BACKUP_CONFIG: await tempFile(yaml) }));
      expect(message).not.toContain(SECRET);
      expect(message).not.toMatch(/12345|67890/);
    }
  });

  it('not in redactConfig output, which leaves the original intact', async () => {
    const config = await load({
      AWS_S3_BUCKET_NAME: 'b',
      AWS_ACCESS_KEY_ID: KEY_ID,
      AWS_SECRET_ACCESS_KEY: SECRET,
      AWS_ENDPOINT: 'minio:9000',
    });
    const withCredsInUrl: Config = {
      ...config,
      target: {
        ...(config.target as Extract<Config['target'], { type: 's3' }>),
        endpoint: `http://u:${SECRET}@m:9000`,
      },
    };
    for (const c of [config, withCredsInUrl]) {
      const logged = JSON.stringify(redactConfig(c));
      expect(logged).not.toContain(SECRET);
      expect(logged).not.toContain(KEY_ID);
      expect(logged).toContain('[redacted]');
    }
    expect(redactConfig(withCredsInUrl).target).toMatchObject({ endpoint: 'http://[redacted]@m:9000' });
    expect(config.target).toMatchObject({ accessKeyId: KEY_ID, secretAccessKey: SECRET });
  });

  it('the webhook URL: not in errors, redacted whole by redactConfig', async () => {
    const url = `https://hooks.example.com/services/${SECRET}`;
    const err = await fail({ BACKUP_WEBHOOK_URL: `ftp://x/${SECRET}`, BACKUP_MODE: 'paws' });
    expect(messageOf(err)).not.toContain(SECRET);
    const yamlErr = await fail({ BACKUP_CONFIG: await tempFile(`webhookUrl: "mailto:${SECRET}"\n`) });
    expect(messageOf(yamlErr)).not.toContain(SECRET);
    const config = await load({ BACKUP_WEBHOOK_URL: url });
    expect(redactConfig(config).webhookUrl).toBe('[redacted]');
    expect(JSON.stringify(redactConfig(config))).not.toContain(SECRET);
    expect(config.webhookUrl).toBe(url);
  });

  it('redactConfig of a local target is an equal copy', async () => {
    const config = await load({});
    expect(redactConfig(config)).toEqual(config);
    expect(redactConfig(config)).not.toBe(config);
  });
});

describe('editDistance', () => {
  it.each([
    ['abc', 'abc', 0],
    ['abc', 'abd', 1],
    ['abc', 'acb', 1],
    ['', 'abc', 3],
    ['kitten', 'sitting', 3],
  ])('%s / %s → %i', (a, b, d) => {
    expect(editDistance(a, b)).toBe(d);
  });
});

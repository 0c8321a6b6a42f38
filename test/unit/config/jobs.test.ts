import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { entriesOfJob, type SnapshotEntry } from '../../../src/archive/catalog.js';
import type { Manifest } from '../../../src/archive/manifest.js';
import { selectJob } from '../../../src/cli/context.js';
import { isSidecarError, type SidecarError } from '../../../src/common/errors.js';
import type { Settings } from '../../../src/config/jobs.js';
import { loadSettings } from '../../../src/config/load.js';
import { HealthState } from '../../../src/observe/health.js';
import { JobsHealth } from '../../../src/observe/jobs-health.js';
import { planJobs } from '../../../src/schedule/label-jobs.js';
import type { ServiceContainer, Stack } from '../../../src/stack/discover.js';
import { assertLabels, labelProblems } from '../../../src/stack/label-check.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'jobs-test-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function settingsFrom(yaml: string, env: NodeJS.ProcessEnv = {}): Promise<Settings> {
  const path = join(dir, `${randomUUID()}.yml`);
  await writeFile(path, yaml);
  return loadSettings({ BACKUP_CONFIG: path, ...env }, { defaultFile: join(dir, 'absent.yml') });
}

async function problems(yaml: string, env: NodeJS.ProcessEnv = {}): Promise<string> {
  try {
    await settingsFrom(yaml, env);
  } catch (err) {
    if (isSidecarError(err, 'CONFIG_INVALID')) return err.message;
    throw err;
  }
  throw new Error('expected CONFIG_INVALID');
}

const TWO_JOBS = `
compression: gzip
target: { type: local, path: /archive }
retention: { keepDaily: 3, keepWeekly: 2 }
jobs:
  - name: db
    schedule: "*/5 * * * * *"
    volumes: [mariadb_data]
    retention: { keepLast: 2 }
  - name: files
    schedule: "0 3 * * *"
    volumes: [moodle_data, moodledata_data]
    compression: zstd
    mode: pause
    target: { type: s3, bucket: moodle-files, endpoint: "http://s3:5000", forcePathStyle: true }
`;

describe('job resolution', () => {
  it('without jobs: one implicit job "default" with the top-level settings', async () => {
    const s = await loadSettings(
      { BACKUP_CRON_EXPRESSION: '0 2 * * *' },
      { defaultFile: join(dir, 'no.yml') },
    );
    expect(s.jobs).toHaveLength(1);
    expect(s.jobs[0]).toMatchObject({ name: 'default', source: 'implicit' });
    expect(s.jobs[0]?.config).toEqual(s.config);
    expect(s.config.schedule).toBe('0 2 * * *');
  });

  it('each job overrides the top-level defaults; mappings merge key by key', async () => {
    const s = await settingsFrom(TWO_JOBS);
    const [db, files] = s.jobs;
    expect(s.jobs.map((j) => [j.name, j.source])).toEqual([
      ['db', 'config'],
      ['files', 'config'],
    ]);
    expect(db?.config).toMatchObject({
      schedule: '*/5 * * * * *',
      volumes: ['mariadb_data'],
      compression: 'gzip',
      mode: 'stop',
      target: { type: 'local', path: '/archive' },
    });
    // keepLast from the job, keepDaily/keepWeekly from the top level, the rest from the defaults.
    expect(db?.config.retention).toMatchObject({ keepLast: 2, keepDaily: 3, keepWeekly: 2, keepMonthly: 6 });
    expect(files?.config).toMatchObject({
      schedule: '0 3 * * *',
      volumes: ['moodle_data', 'moodledata_data'],
      compression: 'zstd',
      mode: 'pause',
      target: { type: 's3', bucket: 'moodle-files', endpoint: 'http://s3:5000', region: 'us-east-1' },
    });
    expect(files?.config.retention).toMatchObject({ keepLast: 0, keepDaily: 3 });
    // Process-wide settings are the same for every job: one state dir, one run lock.
    expect(new Set(s.jobs.map((j) => j.config.stateDir))).toEqual(new Set([s.config.stateDir]));
  });

  it('the environment is part of the defaults; the generic AWS variables reach an S3 job target', async () => {
    const s = await settingsFrom(TWO_JOBS, {
      BACKUP_KEEP_DAILY: '9',
      AWS_ACCESS_KEY_ID: 'AKIAEXAMPLE',
      AWS_SECRET_ACCESS_KEY: 'not-a-real-secret',
    });
    const files = s.jobs.find((j) => j.name === 'files');
    expect(files?.config.retention.keepDaily).toBe(9);
    expect(files?.config.target).toMatchObject({
      accessKeyId: 'AKIAEXAMPLE',
      secretAccessKey: 'not-a-real-secret',
    });
    // The top-level target stays local: the credentials do not turn it into S3.
    expect(s.config.target).toEqual({ type: 'local', path: '/archive' });
  });

  it('a job target of the default type is merged over the default target', async () => {
    const s = await settingsFrom(`
target: { type: s3, bucket: main, region: eu-west-1, prefix: site }
jobs:
  - name: a
  - name: b
    target: { prefix: other }
`);
    expect(s.jobs[0]?.config.target).toMatchObject({ bucket: 'main', prefix: 'site', region: 'eu-west-1' });
    expect(s.jobs[1]?.config.target).toMatchObject({ bucket: 'main', prefix: 'other', region: 'eu-west-1' });
  });

  it('errors name the offending key as jobs[i].key, all at once', async () => {
    const msg = await problems(`
jobs:
  - name: db
    schedule: "0 25 * * *"
    volumes: [mariadb_data]
  - name: db
    schedul: "@daily"
  - name: Files!
    retention: { keepDaly: 3 }
  - name: web
    healthPort: 9000
  - name: s3job
    target: { type: s3 }
  - name: label-x
  - volumes: [a]
  - just a string
`);
    expect(msg).toContain('jobs[0].schedule: "0 25 * * *" is not a cron expression');
    expect(msg).toContain('jobs[1].name: "db" is already the name of jobs[0]');
    expect(msg).toContain('jobs[1].schedul: unknown key (did you mean schedule?)');
    expect(msg).toContain('jobs[2].name: expected lowercase letters');
    expect(msg).toContain('jobs[3].healthPort: set for the whole sidecar, not per job');
    expect(msg).toContain('jobs[4].target.bucket:');
    expect(msg).toContain('jobs[5].name: "label-x" starts with "label-"');
    expect(msg).toContain('jobs[6].name: required');
    expect(msg).toContain('jobs[7]: expected a mapping');
  });

  it('nested schema errors inside a job are prefixed with the job', async () => {
    const msg = await problems(`
jobs:
  - name: a
    retention: { keepDaly: 3 }
  - name: b
    compression: none
    compressionLevel: 5
`);
    expect(msg).toContain('jobs[0].retention.keepDaly: unknown key (did you mean keepDaily?)');
    expect(msg).toContain('jobs[1].compressionLevel: has no effect with compression "none"');
  });

  it('jobs must be a non-empty list', async () => {
    expect(await problems('jobs: { name: a }')).toContain(
      'jobs: expected a list of jobs, received a mapping',
    );
    expect(await problems('jobs: []')).toContain('jobs: expected at least one job');
    expect(await problems('job: []')).toContain('job: unknown key (did you mean jobs?)');
  });

  it('commands pick a job by --job, the only one, or every job', async () => {
    const s = await settingsFrom(TWO_JOBS);
    expect(selectJob(s, 'files', 'one')?.name).toBe('files');
    expect(selectJob(s, undefined, 'all')).toBeUndefined();
    const usage = (() => {
      try {
        selectJob(s, undefined, 'one');
      } catch (err) {
        return err as SidecarError;
      }
    })();
    expect(usage?.code).toBe('USAGE');
    expect(usage?.hint).toContain('--job');
    expect(() => selectJob(s, 'nope', 'all')).toThrow('no job "nope"');
  });
});

function container(
  name: string,
  service: string,
  labels: Record<string, string>,
  volumes: string[],
): ServiceContainer {
  return {
    id: `id-${name}`,
    name,
    service,
    image: 'img',
    imageId: 'sha256:1',
    state: 'running',
    labels,
    dependsOn: [],
    mounts: volumes.map((v, i) => ({ volume: `p_${v}`, destination: `/m${i}` })),
  };
}

function stack(containers: ServiceContainer[]): Stack {
  const names = ['mariadb_data', 'moodle_data', 'moodledata_data'];
  const volumes = names.map((short) => ({ name: `p_${short}`, short, mountedBy: [] }));
  return { project: 'p', containers, volumes, allVolumes: volumes };
}

describe('jobs from schedule labels', () => {
  const env = { BACKUP_CRON_EXPRESSION: '0 2 * * *', BACKUP_PROJECT: 'p' };
  const implicit = () => loadSettings(env, { defaultFile: join(dir, 'no.yml') });

  it('a schedule label makes a job for the volumes the container mounts and takes them from the default job', async () => {
    const plan = planJobs(
      await implicit(),
      stack([
        container('p-mariadb-1', 'mariadb', {}, ['mariadb_data']),
        container('p-moodle-1', 'moodle', { 'moodle-backup.schedule': '*/10 * * * *' }, [
          'moodle_data',
          'moodledata_data',
        ]),
      ]),
    );
    expect(plan.problems).toEqual([]);
    expect(plan.jobs.map((j) => [j.name, j.source, j.config.schedule, j.config.volumes])).toEqual([
      ['default', 'implicit', '0 2 * * *', ['mariadb_data']],
      ['label-moodle', 'label', '*/10 * * * *', ['moodle_data', 'moodledata_data']],
    ]);
  });

  it('when labels claim every volume, the default job keeps no schedule', async () => {
    const plan = planJobs(
      await implicit(),
      stack([
        container('p-mariadb-1', 'mariadb', { 'moodle-backup.schedule': '@hourly' }, ['mariadb_data']),
        container('p-moodle-1', 'moodle', { 'moodle-backup.schedule': '@daily' }, [
          'moodle_data',
          'moodledata_data',
        ]),
      ]),
    );
    expect(plan.jobs.find((j) => j.name === 'default')?.config.schedule).toBeUndefined();
    expect(plan.jobs.map((j) => j.name)).toEqual(['default', 'label-mariadb', 'label-moodle']);
  });

  it('YAML jobs are not changed by labels', async () => {
    const s = await settingsFrom(TWO_JOBS);
    const plan = planJobs(
      s,
      stack([container('p-mariadb-1', 'mariadb', { 'moodle-backup.schedule': '@hourly' }, ['mariadb_data'])]),
    );
    expect(plan.jobs.slice(0, 2)).toEqual(s.jobs);
    expect(plan.jobs[2]).toMatchObject({ name: 'label-mariadb', config: { volumes: ['mariadb_data'] } });
  });

  it('a bad schedule label is a problem naming container, label and value, and makes no job', async () => {
    const plan = planJobs(
      await implicit(),
      stack([
        container('p-moodle-1', 'moodle', { 'moodle-backup.schedule': 'every day' }, ['moodle_data']),
        container('p-cron-1', 'cron', { 'moodle-backup.schedule': '@daily' }, []),
      ]),
    );
    expect(plan.jobs.map((j) => j.name)).toEqual(['default']);
    expect(plan.jobs[0]?.config.volumes).toEqual([]);
    expect(plan.problems[0]).toMatch(
      /^container p-moodle-1: label moodle-backup.schedule="every day": is not a cron/,
    );
    expect(plan.problems[1]).toContain(
      'container p-cron-1: label moodle-backup.schedule="@daily": the container mounts none',
    );
  });
});

describe('label values', () => {
  it.each([
    ['moodle-backup.stop', 'yes', 'expected true or false'],
    ['moodle-backup.mode', 'freeze', 'expected stop or pause'],
    ['moodle-backup.schedule', '61 * * * *', 'is not a cron expression'],
    ['moodle-backup.depends-on', 'db;cache', 'expected a comma-separated list of service names'],
    ['moodle-backup.stopp', 'true', 'unknown label (did you mean moodle-backup.stop?)'],
  ])('%s=%s is refused', (label, value, expected) => {
    const [p] = labelProblems({ name: 'c1', labels: { [label]: value } });
    expect(p).toMatchObject({ container: 'c1', label, value });
    expect(p?.problem).toContain(expected);
    expect(() => assertLabels([{ name: 'c1', labels: { [label]: value } }])).toThrow(
      `container c1: label ${label}=${JSON.stringify(value)}`,
    );
  });

  it('good values and foreign labels pass', () => {
    expect(
      labelProblems({
        name: 'c1',
        labels: {
          'moodle-backup.stop': 'false',
          'moodle-backup.mode': 'pause',
          'moodle-backup.schedule': '*/15 * * * * *',
          'moodle-backup.depends-on': 'mariadb, redis',
          'moodle-backup.pre': 'anything at all',
          'docker-volume-backup.stop-during-backup': 'whatever',
          'com.example.other': 'x',
        },
      }),
    ).toEqual([]);
  });
});

describe('retention and health per job', () => {
  const entry = (id: string, job?: string): SnapshotEntry => ({
    id,
    time: new Date(),
    status: job === null ? 'incomplete' : 'ok',
    ...(job === null ? {} : { manifest: { job } as Manifest }),
    objects: [],
    storedBytes: 0,
    modified: new Date(),
  });

  it("a job's prune sees its own snapshots and leftovers without a manifest", () => {
    const leftover: SnapshotEntry = { ...entry('x'), status: 'incomplete' };
    delete leftover.manifest;
    const all = [entry('a', 'db'), entry('b', 'files'), entry('c'), leftover];
    expect(entriesOfJob(all, 'db').map((e) => e.id)).toEqual(['a', 'x']);
    // Snapshots from before jobs existed belong to the implicit job.
    expect(entriesOfJob(all, 'default').map((e) => e.id)).toEqual(['c', 'x']);
    expect(entriesOfJob(all, undefined)).toHaveLength(4);
  });

  it('/healthz fails when any job fails, naming it; one job reports as before', () => {
    const now = new Date('2026-11-20T10:00:00Z');
    const a = new HealthState({ now: () => now });
    const b = new HealthState({ now: () => now });
    const health = new JobsHealth(new HealthState());
    health.set('db', a);
    expect(health.report()).toEqual(a.report());
    health.set('files', b);
    a.recordSuccess(new Date('2026-11-20T09:00:00Z'), 'snap-a');
    b.recordSuccess(new Date('2026-11-20T08:00:00Z'), 'snap-b');
    expect(health.report()).toMatchObject({ status: 'ok', lastSnapshot: 'snap-a' });
    b.recordFailure(new Error('bucket gone'), new Date('2026-11-20T09:30:00Z'));
    const r = health.report();
    expect(r.status).toBe('failing');
    expect(r.reason).toContain('job files: last run failed');
    expect(Object.keys(r.jobs ?? {})).toEqual(['db', 'files']);
  });
});

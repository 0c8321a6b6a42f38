import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { listSnapshots, type SnapshotEntry } from '../../src/archive/catalog.js';
import type { Backend } from '../../src/storage/backend.js';
import { createBackend } from '../../src/storage/index.js';
import { runCli } from '../harness/cli.js';
import { cliEnv, type TempDirs, tempDirs } from '../harness/config.js';
import { createTestBucket, testS3Target } from '../harness/s3.js';
import { type ServeProcess, startServeReady, until } from '../harness/serve.js';
import { createMoodleStack, type MoodleStack } from '../harness/stack.js';

/**
 * Several jobs from one YAML file, each with its own schedule, volumes, target and retention: `db` to a
 * local directory, `files` to S3, both on seconds-level schedules in one `serve`; `code` without a schedule,
 * run by `backup --job code`, shares the local target with `db`. Then a tighter retention is pruned job by
 * job, and each prune deletes exactly what its dry run announced, and only that job's snapshots.
 */

interface PruneJson {
  job: string;
  decisions: { id: string; keep: boolean; reasons: string[] }[];
  deleted: string[];
}

const S3_KEYS = {
  type: 's3',
  endpoint: '',
  forcePathStyle: true,
  requestChecksumCalculation: 'when_required',
  responseChecksumValidation: 'when_required',
};

function yaml(opts: {
  project: string;
  dirs: TempDirs;
  bucket: string;
  endpoint: string;
  keep: Record<string, number>;
}): string {
  const s3 = { ...S3_KEYS, endpoint: opts.endpoint, bucket: opts.bucket, prefix: 'files' };
  const retention = (n: number) => JSON.stringify({ keepLast: n });
  return [
    `project: ${opts.project}`,
    `stateDir: ${opts.dirs.state}`,
    `spoolDir: ${opts.dirs.spool}`,
    'compression: gzip',
    `target: { type: local, path: ${opts.dirs.archive} }`,
    // Only keepLast counts: the calendar rules would keep one snapshot per day on their own.
    'retention: { keepDaily: 0, keepWeekly: 0, keepMonthly: 0, keepYearly: 0, keepLast: 50 }',
    'jobs:',
    '  - name: db',
    '    schedule: "*/4 * * * * *"',
    '    volumes: [mariadb_data]',
    `    retention: ${retention(opts.keep.db ?? 50)}`,
    '  - name: files',
    '    schedule: "*/5 * * * * *"',
    '    volumes: [moodle_data, moodledata_data]',
    '    compression: zstd',
    `    target: ${JSON.stringify(s3)}`,
    `    retention: ${retention(opts.keep.files ?? 50)}`,
    '  - name: code',
    '    volumes: [moodle_data]',
    `    retention: ${retention(opts.keep.code ?? 50)}`,
    '',
  ].join('\n');
}

function byJob(entries: SnapshotEntry[], job: string): SnapshotEntry[] {
  return entries.filter((e) => e.status === 'ok' && e.manifest?.job === job);
}

describe('YAML jobs: own schedule, volumes, target and retention per job', () => {
  let stack: MoodleStack;
  let dirs: TempDirs;
  let serve: ServeProcess | undefined;
  let local: Backend & { close?: () => void };
  let s3: Backend & { close?: () => void };
  let env: NodeJS.ProcessEnv;
  let bucket: string;
  const configFile = () => join(dirs.root, 'config.yml');

  beforeAll(async () => {
    [stack, dirs, bucket] = await Promise.all([
      createMoodleStack({ seed: { files: 10, blobKb: 4, bigMb: 1, users: 100, logs: 200 } }),
      tempDirs('jobs'),
      createTestBucket('jobs'),
    ]);
    const server = inject('s3');
    env = {
      ...cliEnv(stack.project, dirs),
      BACKUP_CONFIG: join(dirs.root, 'config.yml'),
      // Credentials from the environment reach the S3 job's target (the default target is local).
      AWS_ACCESS_KEY_ID: server.accessKeyId,
      AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
    };
    // The YAML file sets these; the env must not override them.
    for (const k of ['BACKUP_PROJECT', 'BACKUP_ARCHIVE', 'BACKUP_STATE_DIR', 'BACKUP_SPOOL_DIR'])
      delete env[k];
    await writeFile(
      configFile(),
      yaml({ project: stack.project, dirs, bucket, endpoint: server.endpoint, keep: {} }),
    );
    local = createBackend({ type: 'local', path: dirs.archive });
    s3 = createBackend({ ...testS3Target(bucket, 'files') });
  });

  afterAll(async () => {
    await serve?.stop(5_000);
    local?.close?.();
    s3?.close?.();
    await stack?.remove();
    await dirs?.remove();
  });

  it('serve runs both scheduled jobs, each to its own target with its own volumes', {
    timeout: 240_000,
  }, async () => {
    const ready = await startServeReady(env);
    serve = ready;
    const { port } = ready;
    const diag = () => `\n--- serve log (tail) ---\n${serve?.log().slice(-3000)}`;
    try {
      await until(
        'three snapshots of job db (local) and of job files (S3)',
        async () => {
          const [l, r] = await Promise.all([listSnapshots(local), listSnapshots(s3)]);
          return byJob(l, 'db').length >= 3 && byJob(r, 'files').length >= 3 ? true : undefined;
        },
        180_000,
        1_000,
      );
      const health = (await (await fetch(`http://127.0.0.1:${port}/healthz`)).json()) as {
        status: string;
        jobs: Record<string, { status: string; lastSnapshot: string | null }>;
      };
      expect(health.status).toBe('ok');
      expect(Object.keys(health.jobs).sort()).toEqual(['code', 'db', 'files']);
      expect(health.jobs.db?.lastSnapshot).toMatch(/^\d{8}T/);
      expect(health.jobs.files?.lastSnapshot).toMatch(/^\d{8}T/);
    } catch (err) {
      (err as Error).message += diag();
      throw err;
    }
    expect(await serve.stop(), diag()).toBe(0);
    serve = undefined;

    const l = await listSnapshots(local);
    const r = await listSnapshots(s3);
    // Each target holds only its own job's snapshots, each with only that job's volumes and codec.
    expect(new Set(l.map((e) => e.manifest?.job))).toEqual(new Set(['db']));
    expect(new Set(r.map((e) => e.manifest?.job))).toEqual(new Set(['files']));
    for (const e of byJob(l, 'db')) {
      expect(e.manifest?.volumes.map((v) => v.name)).toEqual(['mariadb_data']);
      expect(e.manifest?.codec).toBe('gzip');
      expect(e.manifest?.kind).toBe('scheduled');
    }
    for (const e of byJob(r, 'files')) {
      expect(e.manifest?.volumes.map((v) => v.name)).toEqual(['moodle_data', 'moodledata_data']);
      expect(e.manifest?.codec).toBe('zstd');
    }
    // Runs never overlapped: each job's runs share one lock, so no two runs' [created, completed] intersect.
    const spans = [...byJob(l, 'db'), ...byJob(r, 'files')]
      .map(
        (e) => [Date.parse(e.manifest?.createdAt ?? ''), Date.parse(e.manifest?.completedAt ?? '')] as const,
      )
      .sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < spans.length; i++)
      expect(spans[i]?.[0]).toBeGreaterThanOrEqual(spans[i - 1]?.[1] ?? 0);
  });

  it('`backup --job` runs one job; prune per job removes exactly what --dry-run announced', {
    timeout: 180_000,
  }, async () => {
    for (let i = 0; i < 2; i++) {
      const b = await runCli(['backup', '--job', 'code', '--json'], env);
      expect(b.code, b.stderr).toBe(0);
      expect(JSON.parse(b.stdout)).toMatchObject({ job: 'code', volumes: [{ name: 'moodle_data' }] });
    }
    const before = { local: await listSnapshots(local), s3: await listSnapshots(s3) };
    expect(byJob(before.local, 'code')).toHaveLength(2);

    // Tighter retention: db keeps 1, files 2, code 1. db and code share the local target.
    const server = inject('s3');
    await writeFile(
      configFile(),
      yaml({
        project: stack.project,
        dirs,
        bucket,
        endpoint: server.endpoint,
        keep: { db: 1, files: 2, code: 1 },
      }),
    );
    const expectedKept = { db: 1, files: 2, code: 1 } as const;
    for (const job of ['db', 'files', 'code'] as const) {
      const dry = await runCli(['prune', '--dry-run', '--json', '--job', job], env);
      expect(dry.code, dry.stderr).toBe(0);
      const plan = JSON.parse(dry.stdout) as PruneJson;
      expect(plan.job).toBe(job);
      const target = job === 'files' ? before.s3 : before.local;
      // The plan covers exactly this job's snapshots.
      expect(plan.decisions.map((d) => d.id).sort()).toEqual(
        byJob(target, job)
          .map((e) => e.id)
          .sort(),
      );
      const announced = plan.decisions.filter((d) => !d.keep).map((d) => d.id);
      expect(announced.length).toBe(byJob(target, job).length - expectedKept[job]);
      expect(plan.deleted).toEqual([]);

      const real = await runCli(['prune', '--json', '--job', job], env);
      expect(real.code, real.stderr).toBe(0);
      expect((JSON.parse(real.stdout) as PruneJson).deleted.sort()).toEqual(announced.sort());
    }
    const after = { local: await listSnapshots(local), s3: await listSnapshots(s3) };
    const kept = (entries: SnapshotEntry[], job: string) => byJob(entries, job).map((e) => e.id);
    // Each job keeps its newest snapshots: the db prune (keep 1) left code's two alone, code's own kept one.
    expect(kept(after.local, 'db')).toEqual(kept(before.local, 'db').slice(0, 1));
    expect(kept(after.local, 'code')).toEqual(kept(before.local, 'code').slice(0, 1));
    expect(kept(after.s3, 'files')).toEqual(kept(before.s3, 'files').slice(0, 2));
    expect(after.local.length + after.s3.length).toBe(4);

    // Without --job, prune covers every job, reporting each.
    const all = await runCli(['prune', '--dry-run', '--json'], env);
    expect(all.code, all.stderr).toBe(0);
    const jobs = (JSON.parse(all.stdout) as { jobs: PruneJson[] }).jobs;
    expect(jobs.map((j) => [j.job, j.decisions.filter((d) => d.keep).length])).toEqual([
      ['db', 1],
      ['files', 2],
      ['code', 1],
    ]);
    expect(await stack.states()).toEqual({ mariadb: 'running', moodle: 'running' });
  });
});

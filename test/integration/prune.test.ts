import { createHash, randomBytes } from 'node:crypto';
import { utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { listSnapshots } from '../../src/archive/catalog.js';
import { type Manifest, newSnapshotId, serializeManifest } from '../../src/archive/manifest.js';
import { silentLogger } from '../../src/observe/logger.js';
import { prune } from '../../src/prune/run.js';
import type { Backend } from '../../src/storage/backend.js';
import { createBackend } from '../../src/storage/index.js';
import { runCli } from '../harness/cli.js';
import { cliEnv, type TempDirs, tempDirs } from '../harness/config.js';
import { KEEP_LAST_2, KEEP_LAST_2_ENV } from '../harness/retention.js';
import { createTestBucket, testS3Target } from '../harness/s3.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

function manifest(id: string, createdAt: Date, kind: Manifest['kind'], bytes: Buffer): Manifest {
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  return {
    format: 'moodle-backup-sidecar/1',
    id,
    kind,
    status: 'ok',
    createdAt: createdAt.toISOString(),
    completedAt: new Date(createdAt.getTime() + 60_000).toISOString(),
    tool: { name: 'moodle-backup-sidecar', version: '0.0.0-test' },
    project: 'prune-test',
    mode: 'stop',
    codec: 'zstd',
    encryption: null,
    volumes: [
      {
        name: 'mariadb_data',
        dockerName: 'prune-test_mariadb_data',
        file: 'mariadb_data.tar.zst',
        rawBytes: bytes.length * 3,
        storedBytes: bytes.length,
        sha256,
        mountedAt: [{ service: 'mariadb', destination: '/bitnami/mariadb' }],
        excluded: [],
      },
    ],
    stack: { services: [], moodle: null },
    timings: { quiesceMs: 1, readMs: 1, downtimeMs: 2, uploadMs: 0, totalMs: 3 },
  };
}

const put = (b: Backend, key: string, data: Buffer | string) =>
  b.put(key, Readable.from([Buffer.from(data)]));

interface Crafted {
  ids: Record<string, string>;
  /** Keys outside any snapshot directory: prune must never touch them. */
  foreign: string[];
}

/**
 * A target as months of real use leave it: complete snapshots of every kind, a damaged manifest, and two
 * manifest-less leftovers (failed runs), one last written 30 h ago (when `backdate` can set mtimes) and one
 * just now, although its id says it started 30 h ago.
 */
async function craft(b: Backend, now: number, backdate?: (key: string, time: Date) => Promise<void>) {
  const ids: Record<string, string> = {};
  const ok = async (label: string, ageMs: number, kind: Manifest['kind']) => {
    const created = new Date(now - ageMs);
    const id = newSnapshotId(created);
    const bytes = randomBytes(2048);
    await put(b, `${id}/mariadb_data.tar.zst`, bytes);
    await put(b, `${id}/manifest.json`, serializeManifest(manifest(id, created, kind, bytes)));
    ids[label] = id;
  };
  await ok('s1', 1 * HOUR, 'scheduled');
  await ok('s2', 2 * HOUR, 'manual');
  await ok('s3', 3 * HOUR, 'scheduled');
  await ok('prYoung', 1 * DAY, 'pre-restore');
  await ok('prOld', 20 * DAY, 'pre-restore');
  await ok('sOld', 40 * DAY, 'scheduled');
  ids.damaged = newSnapshotId(new Date(now - 4 * HOUR));
  await put(b, `${ids.damaged}/mariadb_data.tar.zst`, randomBytes(512));
  await put(b, `${ids.damaged}/manifest.json`, '{"format": "moodle-backup-sidecar/1", "id": ');
  ids.leftOld = newSnapshotId(new Date(now - 3 * DAY));
  ids.leftYoung = newSnapshotId(new Date(now - 30 * HOUR));
  for (const id of [ids.leftOld, ids.leftYoung]) {
    await put(b, `${id}/moodledata_data.tar.zst`, randomBytes(1024));
    await put(b, `${id}/moodle_data.tar.zst`, randomBytes(1024));
  }
  if (backdate) {
    for (const o of await b.list(`${ids.leftOld}/`)) await backdate(o.key, new Date(now - 30 * HOUR));
  }
  const foreign = ['notes.txt', 'other/readme.txt'];
  for (const key of foreign) await put(b, key, 'not a snapshot');
  return { ids, foreign } satisfies Crafted;
}

interface JsonDecision {
  id: string;
  keep: boolean;
  reasons: string[];
}

async function cli(args: string[], env: NodeJS.ProcessEnv) {
  const r = await runCli(args, env, { timeoutMs: 60_000 });
  expect(r.code, r.stderr).toBe(0);
  return r.stdout;
}

async function keys(b: Backend): Promise<string[]> {
  return (await b.list('')).map((o) => o.key);
}

describe.each([
  { name: 'local directory', s3: false },
  { name: 'S3', s3: true },
])('prune on a $name target', ({ s3 }) => {
  let dirs: TempDirs;
  let backend: ReturnType<typeof createBackend>;
  let env: NodeJS.ProcessEnv;
  let crafted: Crafted;
  let bucket = '';

  beforeAll(async () => {
    dirs = await tempDirs('prune');
    env = { ...cliEnv('prune-test', dirs), ...KEEP_LAST_2_ENV };
    if (s3) {
      bucket = await createTestBucket('prune');
      const conf = inject('s3');
      delete env.BACKUP_ARCHIVE;
      Object.assign(env, {
        AWS_S3_BUCKET_NAME: bucket,
        AWS_S3_PATH: 'moodle',
        AWS_ENDPOINT: new URL(conf.endpoint).host,
        AWS_ENDPOINT_PROTO: 'http',
        AWS_S3_PATH_STYLE: 'true',
        AWS_S3_CHECKSUMS: 'when_required',
        AWS_ACCESS_KEY_ID: conf.accessKeyId,
        AWS_SECRET_ACCESS_KEY: conf.secretAccessKey,
      });
      backend = createBackend(testS3Target(bucket, 'moodle'));
      // Outside the prefix: another tool's data in the same bucket.
      const root = createBackend(testS3Target(bucket, ''));
      await put(root, 'elsewhere/keep.txt', 'x');
      root.close?.();
      crafted = await craft(backend, Date.now());
    } else {
      backend = createBackend({ type: 'local', path: dirs.archive });
      crafted = await craft(backend, Date.now(), (key, t) => utimes(join(dirs.archive, key), t, t));
    }
  });
  afterAll(async () => {
    backend?.close?.();
    await dirs?.remove();
  });

  it('--dry-run shows which rule keeps each snapshot and deletes nothing; prune deletes exactly the forgotten', async () => {
    const { ids } = crafted;
    const before = await keys(backend);

    const text = await cli(['prune', '--dry-run'], env);
    expect(text).toMatch(/^ID\s+TIME \(UTC\)\s+ACTION\s+REASONS/);
    expect(text).toContain('dry run: nothing deleted');
    const dry = JSON.parse(await cli(['prune', '--dry-run', '--json'], env)) as {
      decisions: JsonDecision[];
      deleted: string[];
    };
    expect(dry.deleted).toEqual([]);
    expect(await keys(backend)).toEqual(before);

    const byId = new Map(dry.decisions.map((d) => [d.id, d]));
    const decision = (label: string) => byId.get(ids[label] as string);
    expect(dry.decisions).toHaveLength(Object.keys(ids).length);
    expect(decision('s1')).toMatchObject({ keep: true, reasons: ['last 1', 'newest good snapshot'] });
    expect(decision('s2')).toMatchObject({ keep: true, reasons: ['last 2'] });
    expect(decision('s3')).toMatchObject({ keep: false, reasons: ['not kept by any rule'] });
    expect(decision('damaged')).toMatchObject({ keep: false, reasons: ['failed (manifest status not ok)'] });
    expect(decision('prYoung')).toMatchObject({ keep: true, reasons: ['pre-restore younger than 14 days'] });
    expect(decision('prOld')).toMatchObject({ keep: false, reasons: ['pre-restore older than 14 days'] });
    expect(decision('sOld')).toMatchObject({ keep: false, reasons: ['not kept by any rule'] });
    // Grace counts from the last write: an old id written just now is a run still uploading.
    expect(decision('leftYoung')).toMatchObject({ keep: true, reasons: ['incomplete, within grace period'] });
    // S3 cannot backdate an object: there the old leftover is as fresh as the young one (see the next test).
    expect(decision('leftOld')).toMatchObject(
      s3
        ? { keep: true, reasons: ['incomplete, within grace period'] }
        : { keep: false, reasons: ['incomplete, older than 24 hours'] },
    );

    const forgotten = dry.decisions.filter((d) => !d.keep).map((d) => d.id);
    const real = JSON.parse(await cli(['prune', '--json'], env)) as { deleted: string[] };
    expect([...real.deleted].sort()).toEqual([...forgotten].sort());
    const after = await keys(backend);
    expect(after).toEqual(before.filter((k) => !forgotten.some((id) => k.startsWith(`${id}/`))));
    for (const key of crafted.foreign) expect(after).toContain(key);

    // Idempotent: a second run finds nothing more to delete.
    const again = JSON.parse(await cli(['prune', '--json'], env)) as { deleted: string[] };
    expect(again.deleted).toEqual([]);
  });

  // Registered for S3 only: there an object's time cannot be set back, so the clock is moved instead.
  if (s3)
    it('a leftover is swept once the grace period after its last write has passed', async () => {
      const { ids } = crafted;
      const before = await keys(backend);
      const later = new Date(Date.now() + 25 * HOUR);
      const r = await prune(backend, KEEP_LAST_2, { now: later, log: silentLogger() });
      expect([...r.deleted].sort()).toEqual([ids.leftOld, ids.leftYoung].sort());
      const after = await keys(backend);
      expect(after).toEqual(before.filter((k) => !r.deleted.some((id) => k.startsWith(`${id}/`))));
      const root = createBackend(testS3Target(bucket, ''));
      expect((await root.list('elsewhere/')).map((o) => o.key)).toEqual(['elsewhere/keep.txt']);
      root.close?.();
      const statuses = (await listSnapshots(backend)).map((e) => e.status);
      expect(statuses).toEqual(['ok', 'ok', 'ok']);
    });

  // Registered once (local): the delete order is backend-independent.
  if (!s3)
    it('deletes a snapshot manifest first, so a half-deleted one is never listed as complete', async () => {
      const inner = createBackend({ type: 'local', path: join(dirs.root, 'order') });
      const now = Date.now();
      const { ids } = await craft(inner, now);
      const deletes: string[] = [];
      const recording: Backend = {
        location: inner.location,
        put: (k, s, o) => inner.put(k, s, o),
        get: (k) => inner.get(k),
        stat: (k) => inner.stat(k),
        list: (p) => inner.list(p),
        delete: async (k) => {
          deletes.push(k);
          await inner.delete(k);
        },
      };
      const r = await prune(recording, KEEP_LAST_2, { now: new Date(now), log: silentLogger() });
      expect(r.deleted).toContain(ids.s3);
      for (const id of r.deleted) {
        const own = deletes.filter((k) => k.startsWith(`${id}/`));
        const hasManifest = id !== ids.leftOld && id !== ids.leftYoung;
        if (hasManifest) expect(own[0]).toBe(`${id}/manifest.json`);
        expect(own.length).toBeGreaterThan(0);
      }
    });
});

import { spawnSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Manifest } from '../../src/archive/manifest.js';
import { runBackup } from '../../src/backup/run.js';
import type { BackupMode, Config } from '../../src/config/types.js';
import { silentLogger } from '../../src/observe/logger.js';
import { runRestore } from '../../src/restore/run.js';
import { createBackend } from '../../src/storage/index.js';
import { runVerify } from '../../src/verify/run.js';
import { type TempDirs, tempDirs, testConfig } from '../harness/config.js';
import { docker, execOk } from '../harness/docker.js';
import { fingerprintVolume } from '../harness/fingerprint.js';
import { capturingLogger } from '../harness/moodle.js';
import { createPgStack, PG, type PgStack, pgFingerprint } from '../harness/pg-stack.js';
import { copySnapshot, sha256, zstd } from '../harness/snapshot-tamper.js';

/** Wrecks the site the way an admin's mistake would: a table dropped, rows deleted and changed. */
async function wreck(stack: PgStack): Promise<void> {
  await stack.sql(
    "DROP TABLE mdl_course; DELETE FROM mdl_user WHERE id > 1500; UPDATE mdl_config SET value = 'x' WHERE id < 20",
  );
  await execOk(stack.containers.moodle, ['rm', '-rf', '/bitnami/moodledata/filedir']);
}

/** The command lines of every `docker exec` into the project's containers (Docker puts them in exec_create). */
async function recordExecs(project: string): Promise<() => string[]> {
  const stream = (await docker().getEvents({
    filters: {
      type: ['container'],
      event: ['exec_create'],
      label: [`com.docker.compose.project=${project}`],
    },
  })) as unknown as NodeJS.ReadableStream & { destroy(): void };
  let text = '';
  stream.on('data', (d: Buffer) => {
    text += d.toString();
  });
  stream.on('error', () => undefined);
  return () => {
    stream.destroy();
    return text
      .split('\n')
      .filter(Boolean)
      .map((l) => (JSON.parse(l) as { Action: string }).Action);
  };
}

async function restore(config: Config, snapshot: string, log = silentLogger()): Promise<void> {
  await runRestore({
    docker: docker(),
    config,
    backend: createBackend(config.target),
    log,
    snapshot,
    safetySnapshot: false,
  });
}

describe('PostgreSQL stack: stop, pause and online (pg_dump) round trips, verify --deep', () => {
  let stack: PgStack;
  let dirs: TempDirs;
  let config: (mode: BackupMode) => Config;
  const snapshots: Partial<Record<BackupMode, Manifest>> = {};

  beforeAll(async () => {
    [stack, dirs] = await Promise.all([createPgStack(), tempDirs('pg')]);
    config = (mode) => testConfig(stack.project, dirs, { mode });
  }, 180_000);
  afterAll(async () => {
    await stack?.remove();
    await dirs?.remove();
  });

  for (const mode of ['stop', 'pause', 'online'] as const) {
    it(`${mode}: backup, wreck, restore: every row and file as before, the site answers`, async () => {
      const rows = await pgFingerprint(stack);
      const files = await fingerprintVolume(stack.volumes.moodledata_data);
      const execs = await recordExecs(stack.project);
      const { log, lines } = capturingLogger();
      const m = await runBackup({
        docker: docker(),
        config: config(mode),
        backend: createBackend(config(mode).target),
        log,
      });
      snapshots[mode] = m;
      expect(m.mode).toBe(mode);
      if (mode === 'online') {
        // The datadir volume is dumped, not archived; rows per table recorded by database and table.
        expect(m.volumes.map((v) => v.name).sort()).toEqual(['moodle_data', 'moodledata_data']);
        expect(m.database).toMatchObject({
          kind: 'pg-dump',
          file: 'postgres.sql.zst',
          databases: [PG.db],
          user: PG.user,
          volume: { name: 'postgres_data', destination: '/var/lib/postgresql/data' },
        });
        expect(m.database?.tables).toMatchObject({
          [`${PG.db}.public.mdl_user`]: 2000,
          [`${PG.db}.public.mdl_course`]: 300,
          [`${PG.db}.public.mdl_files`]: 3000,
          [`${PG.db}.public.mdl_empty`]: 0,
        });
      } else {
        expect(m.volumes.map((v) => v.name).sort()).toEqual([
          'moodle_data',
          'moodledata_data',
          'postgres_data',
        ]);
      }
      expect(await stack.states()).toEqual({ postgres: 'running', moodle: 'running' });

      await wreck(stack);
      expect(await pgFingerprint(stack)).not.toEqual(rows);
      await restore(config(mode), m.id, log);
      // The password stays in the database container: not in the sidecar's log, not on an exec's command line.
      const commands = execs();
      if (mode === 'online') {
        expect(commands.some((c) => c.includes('pg_dump'))).toBe(true);
        expect(commands.some((c) => c.includes('psql -X -q -v ON_ERROR_STOP=1'))).toBe(true);
      }
      expect(commands.filter((c) => c.includes(PG.password))).toEqual([]);
      expect(JSON.stringify(lines())).not.toContain(PG.password);
      expect(await stack.states()).toEqual({ postgres: 'running', moodle: 'running' });
      await stack.waitForDb();
      expect(await pgFingerprint(stack)).toEqual(rows);
      expect(
        (await fingerprintVolume(stack.volumes.moodledata_data)).entries.filter(
          (e) => !e.path.startsWith('cache/'),
        ),
      ).toEqual(files.entries.filter((e) => !e.path.startsWith('cache/')));
      expect(await stack.page()).toMatch(/200 OK[\s\S]*300 courses/);
    }, 240_000);
  }

  it('verify --deep: pg_amcheck passes on the stop and pause datadirs and the loaded dump; a damaged dump fails', async () => {
    const online = snapshots.online as Manifest;
    const verify = (snapshot: string) =>
      runVerify({
        docker: docker(),
        config: config('online'),
        backend: createBackend(config('online').target),
        log: silentLogger(),
        snapshot,
        deep: true,
      });
    // Datadir archives: a clean copy (stop) and a crash-consistent one (pause: WAL replayed, a stale
    // postmaster.pid) both start in the snapshot's image and pass pg_amcheck.
    for (const m of [snapshots.stop, snapshots.pause] as Manifest[]) {
      const report = await verify(m.id);
      const datadir = report.results.find((r) => r.volume === 'postgres_data' && r.level === 'drill');
      expect(datadir?.ok, `${m.mode}: ${datadir?.detail}`).toBe(true);
      expect(datadir?.detail).toMatch(/pg_amcheck: 5 tables OK/);
    }
    const good = await verify(online.id);
    expect(good.ok, JSON.stringify(good.results)).toBe(true);
    expect(good.results.find((r) => r.volume === 'postgres_data' && r.level === 'drill')?.detail).toMatch(
      /rows per table as in the manifest; pg_amcheck: 5 tables OK/,
    );

    // A dump whose bytes and row counts agree with its manifest but whose data cannot load: a row of
    // mdl_course gets a non-numeric id. Only the deep check (loading it) can see that.
    const copy = await copySnapshot(dirs.archive, online.id);
    const db = copy.manifest.database as NonNullable<Manifest['database']>;
    const path = join(copy.dir, db.file);
    const text = await unzstd(path);
    const damaged = text.replace(/(COPY public\.mdl_course [^\n]*\n)1\t/, '$1x1\t');
    expect(damaged).not.toBe(text);
    const stored = zstd(Buffer.from(damaged));
    await writeFile(path, stored);
    db.storedBytes = stored.length;
    db.sha256 = sha256(stored);
    db.rawBytes = Buffer.byteLength(damaged);
    await copy.save();
    const bad = await verify(copy.id);
    const archive = bad.results.find((r) => r.volume === 'postgres_data' && r.level === 'archive');
    const drill = bad.results.find((r) => r.volume === 'postgres_data' && r.level === 'drill');
    expect(archive?.ok).toBe(true);
    expect(bad.ok).toBe(false);
    expect(drill?.ok).toBe(false);
    expect(drill?.detail).toMatch(/invalid input syntax for type bigint: "x1"/);
  }, 300_000);
});

async function unzstd(path: string): Promise<string> {
  const r = spawnSync('zstd', ['-d', '-c', path], { maxBuffer: 256 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`zstd -d failed: ${r.stderr?.toString()}`);
  return r.stdout.toString('utf8');
}

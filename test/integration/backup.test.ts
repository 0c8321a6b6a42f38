import { createWriteStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { listSnapshots } from '../../src/archive/catalog.js';
import { runBackup } from '../../src/backup/run.js';
import { silentLogger } from '../../src/observe/logger.js';
import { createBackend } from '../../src/storage/index.js';
import { extractWithPlainTar } from '../harness/archive.js';
import { type TempDirs, tempDirs, testConfig } from '../harness/config.js';
import { docker, IMAGES, TEST_LABEL, uniqueName } from '../harness/docker.js';
import { lifecycle, projectEvents } from '../harness/events.js';
import { fingerprintDb, fingerprintVolume, type VolumeFingerprint } from '../harness/fingerprint.js';
import { diffMinusExcludes } from '../harness/moodle.js';
import { createTestBucket, testS3Target } from '../harness/s3.js';
import {
  createMoodleStack,
  DB,
  type MoodleStack,
  sqlIn,
  VOLUME_NAMES,
  waitForMariaDb,
} from '../harness/stack.js';

describe('backup of the seeded stack', () => {
  let stack: MoodleStack;
  let dirs: TempDirs;
  const before: Record<string, VolumeFingerprint> = {};
  let dbBefore: Awaited<ReturnType<typeof fingerprintDb>>;

  beforeAll(async () => {
    stack = await createMoodleStack();
    dirs = await tempDirs('backup');
    for (const v of ['moodle_data', 'moodledata_data'] as const)
      before[v] = await fingerprintVolume(stack.volumes[v]);
    dbBefore = await fingerprintDb(stack.sql, DB.name);
  });
  afterAll(async () => {
    await stack?.remove();
    await dirs?.remove();
  });

  it('to the local target: archives extract with plain tar to identical trees; stop/start order follows depends_on', async () => {
    const since = Date.now();
    const manifest = await runBackup({
      docker: docker(),
      // Full archives: each volume's tarball alone is its whole tree (the incremental format has its own test).
      config: testConfig(stack.project, dirs, { incremental: 'off' }),
      backend: createBackend({ type: 'local', path: dirs.archive }),
      log: silentLogger(),
    });
    const events = lifecycle(await projectEvents(stack.project, since));
    const order = events.filter((e) => e.startsWith('stop') || e.startsWith('start'));
    expect(order).toEqual(['stop moodle', 'stop mariadb', 'start mariadb', 'start moodle']);
    expect(await stack.states()).toEqual({ mariadb: 'running', moodle: 'running' });

    expect(manifest.volumes.map((v) => v.name).sort()).toEqual([...VOLUME_NAMES].sort());
    expect(manifest.stack.moodle).toEqual({ version: '2024100700.00', release: '4.5 (Build: 20241007)' });
    expect(manifest.timings.downtimeMs).toBeGreaterThan(0);
    const dir = join(dirs.archive, manifest.id);
    expect((await readdir(dir)).sort()).toEqual(
      ['manifest.json', 'mariadb_data.tar.zst', 'moodle_data.tar.zst', 'moodledata_data.tar.zst'].sort(),
    );
    for (const v of manifest.volumes) {
      const st = await stat(join(dir, v.file));
      expect(st.size).toBe(v.storedBytes);
      expect(st.mode & 0o777).toBe(0o600);
      expect(v.rawBytes).toBeGreaterThan(v.storedBytes * 0.5);
    }
    expect((await stat(dir)).mode & 0o777).toBe(0o700);

    for (const v of ['moodle_data', 'moodledata_data'] as const) {
      const file = join(dir, `${v}.tar.zst`);
      const extracted = await extractWithPlainTar(file, 'zstd');
      // Everything but what the Moodle excludes leave out (caches, temp, sessions, locks: README "Excludes").
      expect(diffMinusExcludes(before[v] as VolumeFingerprint, await fingerprintVolume(extracted))).toEqual(
        [],
      );
    }
    await expectCleanDatabase(join(dir, 'mariadb_data.tar.zst'), dbBefore);
  });

  it('to S3 (spooled, uploaded after the stack is back): same bytes, manifest last', async () => {
    const bucket = await createTestBucket('backup');
    const backend = createBackend(testS3Target(bucket));
    const manifest = await runBackup({
      docker: docker(),
      config: testConfig(stack.project, dirs, {
        target: testS3Target(bucket),
        compression: 'gzip',
        incremental: 'off',
      }),
      backend,
      log: silentLogger(),
    });
    expect(manifest.codec).toBe('gzip');
    expect(manifest.timings.uploadMs).toBeGreaterThan(0);
    const snaps = await listSnapshots(backend);
    expect(snaps.map((s) => [s.id, s.status])).toEqual([[manifest.id, 'ok']]);
    const v = manifest.volumes.find((x) => x.name === 'moodledata_data');
    if (!v) throw new Error('no moodledata_data in manifest');
    const local = join(dirs.root, 's3-moodledata.tar.gz');
    await pipeline(await backend.get(`${manifest.id}/${v.file}`), createWriteStream(local));
    expect((await stat(local)).size).toBe(v.storedBytes);
    const extracted = await extractWithPlainTar(local, 'gzip');
    expect(
      diffMinusExcludes(before.moodledata_data as VolumeFingerprint, await fingerprintVolume(extracted)),
    ).toEqual([]);
    expect(await stack.states()).toEqual({ mariadb: 'running', moodle: 'running' });
  });

  it('pause mode: containers are paused, never stopped, and unpaused afterwards', async () => {
    const since = Date.now();
    const manifest = await runBackup({
      docker: docker(),
      config: testConfig(stack.project, dirs, { mode: 'pause', compression: 'none' }),
      backend: createBackend({ type: 'local', path: dirs.archive }),
      log: silentLogger(),
    });
    expect(manifest.mode).toBe('pause');
    const events = lifecycle(await projectEvents(stack.project, since));
    expect(events).toEqual(['pause moodle', 'pause mariadb', 'unpause mariadb', 'unpause moodle']);
    expect(await stack.states()).toEqual({ mariadb: 'running', moodle: 'running' });
  });
});

/**
 * Extracts the MariaDB archive into a scratch volume, starts a throwaway MariaDB on it and checks that it
 * comes up without crash recovery (a clean shutdown was copied) and holds the same data.
 */
async function expectCleanDatabase(archive: string, expected: Awaited<ReturnType<typeof fingerprintDb>>) {
  const volume = await extractWithPlainTar(archive, 'zstd');
  const name = uniqueName('db');
  const c = await docker().createContainer({
    name,
    Image: IMAGES.mariadb,
    Labels: { [TEST_LABEL]: inject('runId') },
    HostConfig: { Binds: [`${volume}:/bitnami/mariadb`], NetworkMode: 'none' },
  });
  try {
    await c.start();
    await waitForMariaDb(name);
    expect(await fingerprintDb(sqlIn(name), DB.name)).toEqual(expected);
    const logs = (await c.logs({ stdout: true, stderr: true })).toString();
    expect(logs).toContain('ready for connections');
    expect(logs).not.toMatch(/crash recovery|was not shut down normally/i);
  } finally {
    await c.remove({ force: true, v: true }).catch(() => undefined);
  }
}

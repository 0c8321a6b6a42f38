import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listSnapshots } from '../../src/archive/catalog.js';
import type { Manifest } from '../../src/archive/manifest.js';
import { runBackup } from '../../src/backup/run.js';
import { silentLogger } from '../../src/observe/logger.js';
import { runRestore } from '../../src/restore/run.js';
import { createBackend } from '../../src/storage/index.js';
import { runVerify } from '../../src/verify/run.js';
import { logLines, runCli } from '../harness/cli.js';
import { cliEnv, type TempDirs, tempDirs, testConfig } from '../harness/config.js';
import { docker, execOk } from '../harness/docker.js';
import {
  diffFingerprints,
  fingerprintDb,
  fingerprintVolume,
  type VolumeFingerprint,
} from '../harness/fingerprint.js';
import { diffMinusExcludes } from '../harness/moodle.js';
import { createTestBucket, testS3Target } from '../harness/s3.js';
import { createMoodleStack, DB, type MoodleStack } from '../harness/stack.js';

const FILE_VOLUMES = ['moodle_data', 'moodledata_data'] as const;

async function fingerprints(stack: MoodleStack) {
  const files: Record<string, VolumeFingerprint> = {};
  for (const v of FILE_VOLUMES) files[v] = await fingerprintVolume(stack.volumes[v]);
  return { files, db: await fingerprintDb(stack.sql, DB.name) };
}

/** Changes rows, files, modes and leaves Moodle in maintenance mode: everything a restore must undo. */
async function vandalise(stack: MoodleStack) {
  await stack.sql(
    `UPDATE mdl_user SET lastname='Vandal' WHERE id < 100; DELETE FROM mdl_course WHERE id > 250; INSERT INTO mdl_config (name, value) VALUES ('vandal-${Date.now()}', 'x')`,
  );
  await execOk(stack.containers.moodle, [
    'bash',
    '-c',
    'cd /bitnami/moodledata && rm -rf trashdir && echo new > newfile && chmod 0777 .htaccess && ' +
      'f=$(find filedir -type f | head -1) && echo tampered >> "$f" && php /bitnami/moodle/admin/cli/maintenance.php --enable >/dev/null && ' +
      'echo "// hacked" >> /bitnami/moodle/config.php',
  ]);
}

function expectSame(
  a: Awaited<ReturnType<typeof fingerprints>>,
  b: Awaited<ReturnType<typeof fingerprints>>,
) {
  for (const v of FILE_VOLUMES)
    expect(diffMinusExcludes(a.files[v] as VolumeFingerprint, b.files[v] as VolumeFingerprint), v).toEqual(
      [],
    );
  expect(b.db).toEqual(a.db);
}

describe('restore', () => {
  let stack: MoodleStack;
  let dirs: TempDirs;

  beforeAll(async () => {
    stack = await createMoodleStack();
    dirs = await tempDirs('restore');
  });
  afterAll(async () => {
    await stack?.remove();
    await dirs?.remove();
  });

  it('round trip through the local target: data changed after the backup comes back exactly', async () => {
    const config = testConfig(stack.project, dirs);
    const backend = createBackend(config.target);
    const atBackup = await fingerprints(stack);
    const m = await runBackup({ docker: docker(), config, backend, log: silentLogger() });
    await vandalise(stack);
    expect((await fingerprints(stack)).db).not.toEqual(atBackup.db);

    const r = await runRestore({ docker: docker(), config, backend, log: silentLogger(), snapshot: m.id });
    expect(r.applied).toBe(true);
    expect(await stack.states()).toEqual({ mariadb: 'running', moodle: 'running' });
    await stack.waitForDb();
    expectSame(atBackup, await fingerprints(stack));
    expect(
      (await stack.exec('moodle', ['test', '-e', '/bitnami/moodledata/climaintenance.html'])).exitCode,
    ).toBe(1);
    expect(r.report?.upgrade).toBe('none-pending');
    expect(r.report?.databaseReady).toEqual([stack.containers.mariadb]);
    // The safety snapshot holds the vandalised state and is itself restorable.
    const safety = (await listSnapshots(backend)).find((s) => s.id === r.safetySnapshot);
    expect(safety?.manifest?.kind).toBe('pre-restore');
  });

  it('a symlink leaving the code volume and a named pipe in the dataroot are backed up, verified and restored', async () => {
    // Both were stored and then refused by the restore's guard: snapshots that looked complete never restored.
    const config = testConfig(stack.project, dirs);
    const backend = createBackend(config.target);
    const odd =
      'ln -s ../../shared/config-extra.php /bitnami/moodle/config-extra.php && mkfifo /bitnami/moodledata/pipe';
    await execOk(stack.containers.moodle, ['bash', '-c', odd]);
    const atBackup = await fingerprints(stack);
    const m = await runBackup({ docker: docker(), config, backend, log: silentLogger() });
    const report = await runVerify({
      docker: docker(),
      config,
      backend,
      log: silentLogger(),
      snapshot: m.id,
    });
    expect(report.results.filter((r) => !r.ok)).toEqual([]);
    const gone = 'rm /bitnami/moodle/config-extra.php /bitnami/moodledata/pipe';
    await execOk(stack.containers.moodle, ['bash', '-c', gone]);
    await runRestore({
      docker: docker(),
      config,
      backend,
      log: silentLogger(),
      snapshot: m.id,
      safetySnapshot: false,
    });
    await stack.waitForDb();
    expectSame(atBackup, await fingerprints(stack));
    const kinds = await execOk(stack.containers.moodle, [
      'stat',
      '-c',
      '%F %N',
      '/bitnami/moodle/config-extra.php',
      '/bitnami/moodledata/pipe',
    ]);
    expect(kinds).toBe(
      "symbolic link '/bitnami/moodle/config-extra.php' -> '../../shared/config-extra.php'\nfifo '/bitnami/moodledata/pipe'\n",
    );
    await execOk(stack.containers.moodle, ['bash', '-c', gone]);
  });

  it('restores one volume only and leaves the others untouched', async () => {
    const config = testConfig(stack.project, dirs);
    const backend = createBackend(config.target);
    const m = await runBackup({ docker: docker(), config, backend, log: silentLogger() });
    const atBackup = await fingerprints(stack);
    await vandalise(stack);
    const vandalised = await fingerprints(stack);
    await runRestore({
      docker: docker(),
      config,
      backend,
      log: silentLogger(),
      snapshot: m.id,
      volumes: ['moodledata_data'],
      safetySnapshot: false,
    });
    await stack.waitForDb();
    const now = await fingerprints(stack);
    expect(
      diffMinusExcludes(
        atBackup.files.moodledata_data as VolumeFingerprint,
        now.files.moodledata_data as VolumeFingerprint,
      ),
    ).toEqual([]);
    expect(
      diffFingerprints(
        vandalised.files.moodle_data as VolumeFingerprint,
        now.files.moodle_data as VolumeFingerprint,
      ),
    ).toEqual([]);
    expect(now.db).toEqual(vandalised.db);
  });

  it('through S3 with the CLI (`restore latest --yes`), and onto a fresh project whose volumes do not exist', async () => {
    const bucket = await createTestBucket('restore');
    const s3 = testS3Target(bucket);
    const env = cliEnv(stack.project, dirs, {
      AWS_S3_BUCKET_NAME: bucket,
      AWS_ENDPOINT: s3.endpoint?.replace(/^http:\/\//, '') ?? '',
      AWS_ENDPOINT_PROTO: 'http',
      AWS_S3_PATH_STYLE: 'true',
      AWS_S3_CHECKSUMS: 'when_required',
      AWS_ACCESS_KEY_ID: s3.accessKeyId ?? '',
      AWS_SECRET_ACCESS_KEY: s3.secretAccessKey ?? '',
    });
    delete env.BACKUP_ARCHIVE;
    const backup = await runCli(['backup', '--json'], env);
    expect(backup.code, backup.stderr).toBe(0);
    const m = JSON.parse(backup.stdout) as Manifest;
    const atBackup = await fingerprints(stack);
    await vandalise(stack);

    const refused = await runCli(['restore', 'latest'], env);
    expect(refused.code).toBe(8);
    expect(refused.stderr).toContain('--yes');

    const r = await runCli(['restore', 'latest', '--yes'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`restored ${m.id}`);
    expect(logLines(r.stderr).some((l) => l.step === 'verify')).toBe(true);
    await stack.waitForDb();
    expectSame(atBackup, await fingerprints(stack));

    // A fresh host: another project with no volumes at all.
    const fresh = `${stack.project}-fresh`;
    const r2 = await runCli(['restore', m.id, '--yes'], { ...env, BACKUP_PROJECT: fresh });
    expect(r2.code, r2.stderr).toBe(0);
    const freshStack = await createMoodleStack({ project: fresh, seed: false });
    try {
      await freshStack.waitForDb();
      expectSame(atBackup, await fingerprints(freshStack));
      const vols = await docker().listVolumes({
        filters: { label: [`com.docker.compose.project=${fresh}`] },
      });
      expect((vols.Volumes ?? []).map((v) => v.Labels?.['com.docker.compose.volume']).sort()).toEqual([
        'mariadb_data',
        'moodle_data',
        'moodledata_data',
      ]);
    } finally {
      await freshStack.remove();
    }
  });
});

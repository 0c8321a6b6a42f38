import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { runBackup } from '../../src/backup/run.js';
import type { ReadPath } from '../../src/config/types.js';
import { runRestore } from '../../src/restore/run.js';
import { createBackend } from '../../src/storage/index.js';
import { volumeDir } from '../../src/volume/mount-dir.js';
import { demuxLogs } from '../../src/volume/restore-volume.js';
import { type TempDirs, tempDirs, testConfig } from '../harness/config.js';
import { docker, execOk, IMAGES, TEST_LABEL, uniqueName } from '../harness/docker.js';
import { fingerprintDb, fingerprintVolume, type VolumeFingerprint } from '../harness/fingerprint.js';
import { diffMinusExcludes } from '../harness/moodle.js';
import { createMoodleStack, DB, type MoodleStack } from '../harness/stack.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../..');
const FILE_VOLUMES = ['moodle_data', 'moodledata_data'] as const;
/** Every volume of the stack, the database's included: each is read and restored by the chosen path. */
const ALL = ['mariadb_data', ...FILE_VOLUMES] as const;

async function fingerprints(stack: MoodleStack) {
  const files: Record<string, VolumeFingerprint> = {};
  for (const v of FILE_VOLUMES) files[v] = await fingerprintVolume(stack.volumes[v]);
  return { files, db: await fingerprintDb(stack.sql, DB.name) };
}

/** A logger that keeps each record's read path, so a test can tell which path did the work. */
function pathLog() {
  const seen: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) {
        const rec = JSON.parse(line) as { step?: string; readPath?: string };
        if (rec.readPath) seen.push(`${rec.step} ${rec.readPath}`);
      }
      cb();
    },
  });
  return { log: pino({ level: 'info' }, sink), seen };
}

/** The stack runs again and holds what was backed up: files (minus Moodle's excludes) and every DB row. */
async function expectAsBackedUp(stack: MoodleStack, atBackup: Awaited<ReturnType<typeof fingerprints>>) {
  expect(await stack.states()).toEqual({ mariadb: 'running', moodle: 'running' });
  await stack.waitForDb();
  const now = await fingerprints(stack);
  for (const v of FILE_VOLUMES)
    expect(
      diffMinusExcludes(atBackup.files[v] as VolumeFingerprint, now.files[v] as VolumeFingerprint),
      v,
    ).toEqual([]);
  expect(now.db).toEqual(atBackup.db);
}

async function vandalise(stack: MoodleStack) {
  await stack.sql(
    `UPDATE mdl_user SET lastname='Vandal' WHERE id < 100; DELETE FROM mdl_course WHERE id > 250`,
  );
  await execOk(stack.containers.moodle, [
    'bash',
    '-c',
    'cd /bitnami/moodledata && rm -rf trashdir && echo new > .newdot && chmod 0777 .htaccess && ' +
      'f=$(find filedir -type f | head -1) && echo tampered >> "$f"',
  ]);
}

/**
 * The two read paths (GNU tar on the volume's directory, Docker's archive API) make snapshots that restore
 * byte-identical through either path; `docker` stays a working fallback end to end.
 */
describe('read paths: mount and docker', () => {
  let stack: MoodleStack;
  let dirs: TempDirs;

  beforeAll(async () => {
    stack = await createMoodleStack();
    dirs = await tempDirs('paths');
  });
  afterAll(async () => {
    await stack?.remove();
    await dirs?.remove();
  });

  it('a snapshot made by either path restores byte-identical through the other, and docker round-trips', async () => {
    const config = (readPath: ReadPath) => testConfig(stack.project, dirs, { readPath });
    const backend = createBackend(config('auto').target);
    const atBackup = await fingerprints(stack);
    const byMount = pathLog();
    const mMount = await runBackup({ docker: docker(), config: config('mount'), backend, log: byMount.log });
    expect(byMount.seen).toEqual(ALL.map(() => 'read mount'));
    const byDocker = pathLog();
    const mDocker = await runBackup({
      docker: docker(),
      config: config('docker'),
      backend,
      log: byDocker.log,
    });
    expect(byDocker.seen).toEqual(ALL.map(() => 'read docker'));

    const restores: [string, ReadPath, string][] = [
      [mMount.id, 'docker', 'restore docker'],
      [mDocker.id, 'mount', 'restore mount'],
      [mDocker.id, 'docker', 'restore docker'],
    ];
    for (const [snapshot, readPath, expected] of restores) {
      await vandalise(stack);
      expect((await fingerprints(stack)).db).not.toEqual(atBackup.db);
      const r = pathLog();
      await runRestore({ docker: docker(), config: config(readPath), backend, log: r.log, snapshot });
      expect(
        r.seen.filter((s) => s.startsWith('restore ')),
        `${snapshot} via ${readPath}`,
      ).toEqual(ALL.map(() => expected));
      await expectAsBackedUp(stack, atBackup);
    }
  });

  it('a local volume with driver options is never read through its Mountpoint; mount then says so', async () => {
    const name = `${stack.project}_tmpfs`;
    await docker().createVolume({
      Name: name,
      DriverOpts: { type: 'tmpfs', device: 'tmpfs' },
      Labels: { [TEST_LABEL]: inject('runId') },
    });
    try {
      expect(await volumeDir(docker(), name, null, 'auto', 'read')).toBeNull();
      await expect(volumeDir(docker(), name, null, 'mount', 'read')).rejects.toMatchObject({
        code: 'CONFIG_INVALID',
        message: expect.stringContaining(name),
      });
      expect(await volumeDir(docker(), stack.volumes.moodledata_data, null, 'auto', 'write')).toMatch(/^\//);
      expect(await volumeDir(docker(), stack.volumes.moodledata_data, null, 'docker', 'write')).toBeNull();
    } finally {
      await docker().getVolume(name).remove({ force: true });
    }
  });
  it('a sidecar container with the volumes at /backup/<name> (rw) backs up and restores through its mounts', async () => {
    const runs: string[] = [];
    /** The built CLI inside a container, as the image runs it: our own mounts are the only way in. */
    const inContainer = async (args: string[]): Promise<string> => {
      const c = await docker().createContainer({
        name: uniqueName('sidecar'),
        Image: IMAGES.node,
        Cmd: ['node', '/app/dist/cli/main.js', ...args],
        Env: [
          `BACKUP_PROJECT=${stack.project}`,
          'BACKUP_ARCHIVE=/archive',
          'BACKUP_STATE_DIR=/state',
          `BACKUP_HELPER_IMAGE=${IMAGES.busybox}`,
          // mount, not auto: the run fails unless the container's own mounts are found and used.
          'BACKUP_READ_PATH=mount',
        ],
        Labels: { [TEST_LABEL]: inject('runId') },
        HostConfig: {
          Binds: [
            `${ROOT}:/app:ro`,
            '/var/run/docker.sock:/var/run/docker.sock',
            `${dirs.archive}:/archive`,
            `${dirs.root}/in-container-state:/state`,
            ...ALL.map((v) => `${stack.volumes[v]}:/backup/${v}`),
          ],
        },
      });
      try {
        await c.start();
        const r = (await c.wait()) as { StatusCode: number };
        const logs = async (stdout: boolean) =>
          demuxLogs((await c.logs({ stdout, stderr: !stdout })) as unknown as Buffer);
        const err = await logs(false);
        if (r.StatusCode !== 0) throw new Error(`${args.join(' ')} exited ${r.StatusCode}:\n${err}`);
        for (const line of err.split('\n').filter((l) => l.startsWith('{'))) {
          const rec = JSON.parse(line) as { step?: string; readPath?: string };
          if (rec.readPath) runs.push(`${rec.step} ${rec.readPath}`);
        }
        return await logs(true);
      } finally {
        await c.remove({ force: true, v: true });
      }
    };
    await mkdir(dirs.archive, { recursive: true });
    const atBackup = await fingerprints(stack);
    const out = await inContainer(['backup', '--json']);
    const id = (JSON.parse(out) as { id: string }).id;
    await vandalise(stack);
    await inContainer(['restore', id, '--yes', '--no-safety-snapshot']);
    expect(runs.sort()).toEqual([...ALL.map(() => 'read mount'), ...ALL.map(() => 'restore mount')]);
    await expectAsBackedUp(stack, atBackup);
  });
});

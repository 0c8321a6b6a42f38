import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { composeLabels } from '../harness/compose.js';
import { docker, type ExecResult, execIn, execOk } from '../harness/docker.js';
import {
  type DbFingerprint,
  fingerprintDb,
  fingerprintVolume,
  type VolumeFingerprint,
} from '../harness/fingerprint.js';
import { DATAROOT, diffMinusExcludes } from '../harness/moodle.js';
import {
  buildSidecarImage,
  containerLogs,
  dockerSocket,
  type S3Service,
  SIDECAR_IMAGE,
  startS3Service,
} from '../harness/sidecar-image.js';
import { createMoodleStack, DB, type MoodleStack } from '../harness/stack.js';

/**
 * Switching from offen/docker-volume-backup is a change of image: the sidecar image, configured with the
 * settings of offen's MinIO recipe only (AWS_ENDPOINT as host:port of a compose service, AWS_ENDPOINT_PROTO,
 * bucket and keys; no path-style setting), backs up to and restores from an S3 server it reaches by its
 * service name. That server answers path-style requests only, as MinIO does unless given a domain.
 */

const BUCKET = 'backups';
const KEY_ID = 'S3RVER';

interface Fingerprints {
  moodledata: VolumeFingerprint;
  db: DbFingerprint;
}

async function fingerprints(stack: MoodleStack): Promise<Fingerprints> {
  await stack.waitForDb(60_000);
  return {
    moodledata: await fingerprintVolume(stack.volumes.moodledata_data),
    db: await fingerprintDb(stack.sql, DB.name),
  };
}

describe("sidecar image with offen's MinIO settings, S3 reached by a service name", () => {
  let stack: MoodleStack;
  let s3: S3Service;
  let sidecar = '';

  const exec = (args: string[], env?: string[]): Promise<ExecResult> => execIn(sidecar, args, { env });
  async function failWithLogs(message: string): Promise<never> {
    throw new Error(`${message}\n--- sidecar log ---\n${await containerLogs(sidecar).catch(String)}`);
  }

  beforeAll(async () => {
    const build = await buildSidecarImage();
    if (build.code !== 0) throw new Error(`scripts/build-image.sh exited ${build.code}:\n${build.output}`);
    stack = await createMoodleStack({ seed: { files: 20, blobKb: 8, bigMb: 2, users: 100, logs: 200 } });
    // `minio:9000`, as in offen's recipe.
    s3 = await startS3Service(stack.project, stack.network, { alias: 'minio', port: 9000, bucket: BUCKET });
    sidecar = `${stack.project}-backup-1`;
    const c = await docker().createContainer({
      name: sidecar,
      Image: SIDECAR_IMAGE,
      Env: [
        'TZ=UTC',
        `AWS_S3_BUCKET_NAME=${BUCKET}`,
        `AWS_ENDPOINT=${s3.endpoint}`,
        'AWS_ENDPOINT_PROTO=http',
        `AWS_ACCESS_KEY_ID=${KEY_ID}`,
        'AWS_SECRET_ACCESS_KEY=S3RVER',
      ],
      Labels: composeLabels(stack.project, 'backup'),
      HostConfig: {
        Binds: [`${dockerSocket()}:/var/run/docker.sock`],
        // tmpfs over the image's VOLUMEs: no anonymous volume outlives the test.
        Mounts: [
          { Type: 'tmpfs', Source: '', Target: '/var/lib/moodle-backup' },
          { Type: 'tmpfs', Source: '', Target: '/archive' },
        ],
        NetworkMode: stack.network,
      },
      NetworkingConfig: { EndpointsConfig: { [stack.network]: { Aliases: ['backup'] } } },
    });
    await c.start();
  }, 15 * 60_000);

  afterAll(async () => {
    await stack?.remove();
  }, 180_000);

  it('backs up with `docker exec <sidecar> backup` and restores the site with `restore latest --yes`', async () => {
    const saved = await fingerprints(stack);
    const backup = await exec(['backup', '--json']);
    if (backup.exitCode !== 0) await failWithLogs(`backup exited ${backup.exitCode}:\n${backup.stderr}`);
    const id = (JSON.parse(backup.stdout) as { id: string }).id;
    // Stored in that server (which takes only path-style requests): its log names each object it stored.
    expect(await containerLogs(s3.name, 400)).toContain(
      `Stored object "${id}/manifest.json" in bucket "${BUCKET}" successfully`,
    );
    const listed = await exec(['snapshots', '--json']);
    expect(listed.exitCode, listed.stderr).toBe(0);
    expect(JSON.parse(listed.stdout)).toMatchObject([{ id, status: 'ok' }]);

    // What a restore is for: the site's data damaged after the backup.
    await stack.sql("UPDATE mdl_user SET lastname='Vandal' WHERE id < 50");
    await execOk(stack.containers.moodle, [
      'sh',
      '-c',
      `rm -rf ${DATAROOT}/filedir/* && echo x > ${DATAROOT}/x`,
    ]);
    expect((await fingerprints(stack)).db).not.toEqual(saved.db);

    const restore = await exec(['restore', 'latest', '--yes']);
    if (restore.exitCode !== 0) await failWithLogs(`restore exited ${restore.exitCode}:\n${restore.stderr}`);
    expect(restore.stdout).toContain(`restored ${id}`);
    expect(await stack.states()).toEqual({ mariadb: 'running', moodle: 'running' });
    const now = await fingerprints(stack);
    expect(diffMinusExcludes(saved.moodledata, now.moodledata)).toEqual([]);
    expect(now.db).toEqual(saved.db);
  }, 600_000);

  it('virtual-host addressing forced on that server fails naming AWS_S3_PATH_STYLE=true, stack running', async () => {
    const r = await exec(['backup'], ['AWS_S3_PATH_STYLE=false']);
    expect(r.exitCode, r.stderr).toBe(6);
    const error = r.stderr.split('\n').find((l) => l.startsWith('error ['));
    expect(error).toMatch(new RegExp(`^error \\[STORAGE_FAILED\\]: .*ENOTFOUND ${BUCKET}\\.minio`));
    expect(r.stderr).toContain('AWS_S3_PATH_STYLE=true');
    expect(await stack.states()).toEqual({ mariadb: 'running', moodle: 'running' });
  }, 300_000);
});

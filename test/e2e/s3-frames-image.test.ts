import { generateIdentity, identityToRecipient } from 'age-encryption';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Manifest } from '../../src/archive/manifest.js';
import { execIn, execOk } from '../harness/docker.js';
import { type DbFingerprint, fingerprintDb, fingerprintVolume } from '../harness/fingerprint.js';
import { DATAROOT, diffMinusExcludes } from '../harness/moodle.js';
import { createSidecarStack, type SidecarStack } from '../harness/sidecar.js';
import { buildSidecarImage, containerLogs, startS3Service } from '../harness/sidecar-image.js';
import { DB } from '../harness/stack.js';

/**
 * As users run it against S3: the image (Node 22, zstd in zlib) with the volumes at /backup/<name>, so the
 * dataroot's filedir/ goes to the store, whose packs are written as 1 MiB frames by default on an S3 target.
 * A restore lacking a few files reads only their frames (by range), through `docker exec`.
 */
const BUCKET = 'frames';

describe('the image on S3: packs as frames (plain and age-encrypted), a restore lacking a few files reads only their frames', () => {
  let s: SidecarStack;
  let s3Name = '';

  beforeAll(async () => {
    const build = await buildSidecarImage();
    if (build.code !== 0) throw new Error(`scripts/build-image.sh exited ${build.code}:\n${build.output}`);
    s = await createSidecarStack({
      // ~30 MB of filedir, half random: one pack of many frames.
      seed: { files: 300, blobKb: 100, bigMb: 1, users: 50, logs: 100 },
      before: async (stack) => {
        const srv = await startS3Service(stack.project, stack.network, {
          alias: 's3',
          port: 9000,
          bucket: BUCKET,
        });
        s3Name = srv.name;
        return [
          `AWS_S3_BUCKET_NAME=${BUCKET}`,
          `AWS_ENDPOINT=${srv.endpoint}`,
          'AWS_ENDPOINT_PROTO=http',
          'AWS_S3_PATH_STYLE=true',
          'AWS_ACCESS_KEY_ID=S3RVER',
          'AWS_SECRET_ACCESS_KEY=S3RVER',
        ];
      },
    });
  }, 15 * 60_000);
  afterAll(async () => {
    await s?.remove();
  }, 180_000);

  /** `docker exec` of the sidecar, with more env for this command (another store, age keys). */
  const run = async (args: string[], env: string[]) => {
    const r = await execIn(s.sidecar, args, { env });
    if (r.exitCode !== 0)
      throw new Error(
        `${args.join(' ')} exited ${r.exitCode}:\n${r.stderr.slice(-3000)}\n--- sidecar log ---\n${await containerLogs(s.sidecar).catch(String)}`,
      );
    return r;
  };
  const blobs = async () =>
    (
      await execOk(s.stack.containers.moodle, [
        'sh',
        '-c',
        `cd ${DATAROOT} && find filedir -type f -size +20k | sort`,
      ])
    )
      .split('\n')
      .filter(Boolean);
  const sha1 = async (path: string) =>
    (await execOk(s.stack.containers.moodle, ['sha1sum', `${DATAROOT}/${path}`])).slice(0, 40);
  const db = (): Promise<DbFingerprint> => fingerprintDb(s.stack.sql, DB.name);

  /** A backup into `env`'s store, 3 files deleted and restored by their frames, a 4th by --path. */
  async function roundTrip(env: string[], pick: [number, number, number, number]) {
    const saved = { data: await fingerprintVolume(s.stack.volumes.moodledata_data), db: await db() };
    const m = JSON.parse((await run(['backup', '--json'], env)).stdout) as Manifest;
    const set = m.volumes.find((v) => v.name === 'moodledata_data')?.blobs;
    expect(set?.added).toBeGreaterThanOrEqual(300);
    // More than 4 MiB of packs: a handful of files is well under half of them.
    expect(set?.packBytes).toBeGreaterThan(4 << 20);
    expect(await containerLogs(s3Name, 4000)).toMatch(/Stored object "[^"]*store\/packs\//);

    // Three files deleted from the live site (a course's files, say), a fourth apart.
    const files = await blobs();
    expect(files.length).toBeGreaterThan(100);
    const gone = pick.slice(0, 3).map((i) => files[i]) as string[];
    const single = files[pick[3]] as string;
    await execOk(s.stack.containers.moodle, ['rm', ...gone.map((f) => `${DATAROOT}/${f}`)]);

    const restore = await run(['restore', 'latest', '--yes', '--no-safety-snapshot'], env);
    const line =
      /moodledata_data: \d+ blob\(s\) reused, .*?(\d+) fetched from (\d+) pack\(s\) \(([\d.]+) MB read(?:, (\d+) of them by frames)?\)/.exec(
        restore.stderr,
      );
    expect(line, restore.stderr.slice(-3000)).not.toBeNull();
    const [, fetched, packs, mbRead, byFrames] = line as RegExpExecArray;
    expect(Number(fetched)).toBe(3);
    expect(Number(byFrames ?? 0)).toBe(Number(packs));
    // Only the frames those files lie in: less than half of the packs' bytes came down.
    expect(Number(mbRead) * 1e6).toBeLessThan((set?.packBytes ?? 0) / 2);
    expect(await s.stack.states()).toEqual({ mariadb: 'running', moodle: 'running' });
    const now = await fingerprintVolume(s.stack.volumes.moodledata_data);
    expect(diffMinusExcludes(saved.data, now)).toEqual([]);
    expect(await db()).toEqual(saved.db);

    // One file back with nothing stopped, by its frames too.
    const want = await sha1(single);
    expect(want).toBe(single.split('/').pop());
    await execOk(s.stack.containers.moodle, ['rm', `${DATAROOT}/${single}`]);
    await run(['restore', 'latest', '--path', single, '--yes'], env);
    expect(await sha1(single)).toBe(want);
    return m;
  }

  it('backs up into framed packs, then restores 3 deleted files by their frames and one by --path', async () => {
    await roundTrip([], [10, 60, 120, 90]);
  }, 600_000);

  it('the same with age encryption: only the age chunks of those frames are read and opened', async () => {
    const identity = await generateIdentity();
    const m = await roundTrip(
      [
        'AWS_S3_PATH=encrypted',
        `BACKUP_AGE_RECIPIENTS=${await identityToRecipient(identity)}`,
        `BACKUP_AGE_IDENTITY=${identity}`,
      ],
      [20, 70, 130, 100],
    );
    expect(m.encryption).toMatchObject({ scheme: 'age', keyType: 'recipients' });
  }, 600_000);
});

import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Manifest } from '../../src/archive/manifest.js';
import { logLines, runCli } from '../harness/cli.js';
import { cliEnv, type TempDirs, tempDirs } from '../harness/config.js';
import { execOk } from '../harness/docker.js';
import { createTestBucket, s3Env, s3Host } from '../harness/s3.js';
import { createMoodleStack, type MoodleStack } from '../harness/stack.js';

interface RunFigures {
  peakRssMb: number;
  downtimeMs: number;
  moodledataRawBytes: number;
  /** moodledata_data read (tar → codec → disk) in MB/s, from its 'read' log line. */
  moodledataMBps: number;
}

const MB = 1024 * 1024;

async function backup(env: NodeJS.ProcessEnv): Promise<RunFigures> {
  const r = await runCli(['backup', '--json'], env, { timeoutMs: 240_000 });
  expect(r.code, r.stderr).toBe(0);
  const manifest = JSON.parse(r.stdout) as Manifest;
  const logs = logLines(r.stderr);
  const done = logs.find((l) => l.step === 'done');
  const read = logs.find((l) => l.step === 'read' && l.volume === 'moodledata_data');
  const resumed = logs.find((l) => l.step === 'resumed');
  expect(typeof done?.peakRssMb, 'peakRssMb in the done line').toBe('number');
  expect(read && resumed).toBeTruthy();
  const rawBytes = Number(read?.rawBytes);
  return {
    peakRssMb: Number(done?.peakRssMb),
    downtimeMs: manifest.timings.downtimeMs,
    moodledataRawBytes: rawBytes,
    moodledataMBps: Math.round((rawBytes / MB / (Number(read?.ms) / 1000)) * 10) / 10,
  };
}

/** Grow moodledata tenfold with incompressible data, as a site accumulating course backups would. */
async function grow(stack: MoodleStack): Promise<void> {
  await execOk(stack.containers.moodle, [
    'sh',
    '-c',
    'head -c 100M /dev/urandom > /bitnami/moodledata/filedir/grown.mbz && chown 1:1 /bitnami/moodledata/filedir/grown.mbz',
  ]);
}

describe('memory stays flat as the volume grows (streams, no buffering)', () => {
  let stack: MoodleStack;
  let dirs: TempDirs;

  beforeAll(async () => {
    [stack, dirs] = await Promise.all([createMoodleStack({ seed: { bigMb: 10 } }), tempDirs('mem')]);
  }, 300_000);
  afterAll(async () => {
    await stack?.remove();
    await dirs?.remove();
  });

  const local = (tag: string) => cliEnv(stack.project, dirs, { BACKUP_ARCHIVE: join(dirs.root, tag) });

  it('a 10× larger moodledata: peak RSS below the small run + 40 MB and below 150 MB', async () => {
    const small = await backup(local('small'));
    await grow(stack);
    const large = await backup(local('large'));
    console.log(`memory: small ${JSON.stringify(small)}; large ${JSON.stringify(large)}`);
    expect(large.moodledataRawBytes).toBeGreaterThan(small.moodledataRawBytes * 8);
    expect(large.peakRssMb).toBeLessThan(small.peakRssMb + 40);
    expect(large.peakRssMb).toBeLessThan(150);
  }, 600_000);
});

/**
 * The upload streams each part from its range of the spooled file (storage/s3-file-upload.ts): memory does not
 * grow with the archive, the part size or the number of parts in flight. Through lib-storage, which
 * re-assembles a stream into part Buffers, the same backup peaked at 212–251 MB.
 */
describe('memory of a backup to S3: the upload holds a fixed number of parts', () => {
  let stack: MoodleStack;
  let dirs: TempDirs;
  let bucket: string;

  beforeAll(async () => {
    [stack, dirs, bucket] = await Promise.all([
      createMoodleStack({ seed: { bigMb: 10 } }),
      tempDirs('mem-s3'),
      createTestBucket('mem'),
    ]);
  }, 300_000);
  afterAll(async () => {
    await stack?.remove();
    await dirs?.remove();
  });

  it('a 10× larger moodledata uploaded in 16 MiB parts, 4 at a time: peak RSS below the small run + 40 MB and below 150 MB', async () => {
    // The defaults, spelled out: lib-storage held partSize × queueSize and more.
    const env = s3Env(stack, dirs, bucket, s3Host(), { AWS_S3_PART_SIZE_MB: '16', AWS_S3_QUEUE_SIZE: '4' });
    const small = await backup(env);
    await grow(stack);
    const large = await backup(env);
    console.log(`memory to S3: small ${JSON.stringify(small)}; large ${JSON.stringify(large)}`);
    expect(large.moodledataRawBytes).toBeGreaterThan(small.moodledataRawBytes * 8);
    expect(large.peakRssMb).toBeLessThan(small.peakRssMb + 40);
    expect(large.peakRssMb).toBeLessThan(150);
  }, 600_000);
});

import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, inject } from 'vitest';
import { logLines, runCli } from '../harness/cli.js';
import { type TempDirs, tempDirs } from '../harness/config.js';
import { lifecycle, projectEvents } from '../harness/events.js';
import { createTestBucket, s3Env, s3Host } from '../harness/s3.js';
import { createMoodleStack, type MoodleStack } from '../harness/stack.js';
import { FaultProxy, type Rule } from './fault-proxy.js';
import { Figures } from './figures.js';

/**
 * S3 fault suite: the sidecar talks to the S3 protocol server through a fault-injecting proxy on 127.0.0.1.
 * Every run either completes (and the snapshot verifies) or fails with a clear STORAGE_FAILED error; every
 * multipart upload the server started is completed or aborted; no half snapshot is ever listed.
 */
const reset: Rule['fault'] = { kind: 'reset' };
const err = (status: number, code: string): Rule['fault'] => ({ kind: 'status', status, code });

interface Case {
  name: string;
  rules: Rule[];
  /** backup (default), or a command run against the snapshot made by the clean baseline backup. */
  command?: 'snapshots' | 'verify' | 'restore';
  env?: Record<string, string>;
  outcome: 'completes' | 'fails';
}

const CASES: Case[] = [
  {
    name: 'connection reset on the first part upload',
    rules: [{ op: 'UploadPart', fault: reset, times: 1 }],
    outcome: 'completes',
  },
  {
    name: 'connection reset when starting the multipart upload',
    rules: [{ op: 'CreateMultipartUpload', fault: reset, times: 1 }],
    outcome: 'completes',
  },
  {
    name: '503 SlowDown on two part uploads',
    rules: [{ op: 'UploadPart', fault: err(503, 'SlowDown'), times: 2 }],
    outcome: 'completes',
  },
  {
    name: '500 InternalError on completing the upload',
    rules: [{ op: 'CompleteMultipartUpload', fault: err(500, 'InternalError'), times: 1 }],
    outcome: 'completes',
  },
  {
    name: '500 on the manifest write (the commit)',
    rules: [{ op: 'PutObject', fault: err(500, 'InternalError'), times: 1 }],
    outcome: 'completes',
  },
  {
    name: 'a 3 s stall before a part is answered',
    rules: [{ op: 'UploadPart', fault: { kind: 'stall', ms: 3000 }, times: 1, skip: 1 }],
    outcome: 'completes',
  },
  {
    name: 'slow bandwidth (4 MB/s) on every part',
    rules: [{ op: 'UploadPart', fault: { kind: 'slow', bytesPerSecond: 4_000_000 }, times: Infinity }],
    outcome: 'completes',
  },
  {
    name: '503 on listing, then `snapshots` works',
    rules: [{ op: 'ListObjects', fault: err(503, 'ServiceUnavailable'), times: 2 }],
    command: 'snapshots',
    outcome: 'completes',
  },
  {
    name: 'reset when opening an archive, then `verify` works',
    rules: [{ op: 'GetObject', fault: reset, times: 1 }],
    command: 'verify',
    outcome: 'completes',
  },
  {
    name: 'every part upload reset',
    rules: [{ op: 'UploadPart', fault: reset, times: Infinity }],
    outcome: 'fails',
  },
  {
    name: '503 on every request after the upload started',
    rules: [{ op: '*', fault: err(503, 'ServiceUnavailable'), times: Infinity, skip: 2 }],
    outcome: 'fails',
  },
  {
    name: 'a part upload that is never answered (request timeout)',
    rules: [{ op: 'UploadPart', fault: { kind: 'hang' }, times: Infinity }],
    env: { AWS_S3_REQUEST_TIMEOUT: '1s' },
    outcome: 'fails',
  },
  {
    name: 'every archive download fails: restore refuses before stopping anything',
    rules: [{ op: 'GetObject', fault: err(500, 'InternalError'), times: Infinity }],
    command: 'restore',
    outcome: 'fails',
  },
];

interface Snap {
  id: string;
  status: string;
}

describe('S3 fault suite: through a fault-injecting proxy', () => {
  let stack: MoodleStack;
  let dirs: TempDirs;
  let bucket: string;
  let proxy: FaultProxy;
  let baseline: string;
  const figures = new Figures('s3 faults', 'ok');

  const env = (host: string, extra: Record<string, string> = {}) =>
    s3Env(stack, dirs, bucket, host, {
      BACKUP_VOLUMES: 'moodledata_data',
      // Pausing takes milliseconds where a stop/start takes seconds; quiescing is not what this suite tests.
      BACKUP_MODE: 'pause',
      AWS_S3_PART_SIZE_MB: '5',
      AWS_S3_REQUEST_TIMEOUT: '5s',
      // Faults on the multipart upload of a whole-volume archive: the dataroot read whole, not into the store.
      BACKUP_INCREMENTAL: 'off',
      ...extra,
    });
  const direct = () => env(s3Host());

  async function listed(): Promise<Snap[]> {
    const r = await runCli(['snapshots', '--json'], direct(), { timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as Snap[];
  }

  beforeAll(async () => {
    [stack, dirs, bucket] = await Promise.all([
      createMoodleStack({ seed: { files: 20, bigMb: 14, users: 100, logs: 200 } }),
      tempDirs('s3f'),
      createTestBucket('faults'),
    ]);
    proxy = new FaultProxy(Number(new URL(inject('s3').endpoint).port));
    await proxy.start();
    const r = await runCli(['backup', '--json'], direct(), { timeoutMs: 120_000 });
    expect(r.code, r.stderr).toBe(0);
    baseline = (JSON.parse(r.stdout) as { id: string }).id;
  }, 300_000);
  afterAll(async () => {
    figures.save();
    await proxy?.stop();
    await stack?.remove();
    await dirs?.remove();
  });

  figures.each(
    CASES,
    '$name: $outcome',
    async ({ rules, command, outcome, env: extra }) => {
      const before = new Set((await listed()).map((s) => s.id));
      proxy.set(rules);
      // Docker events are matched by the second: only the restore case reads them (nothing stopped).
      if (command === 'restore') await sleep(1100);
      const t0 = Date.now();
      const args =
        command === 'snapshots'
          ? ['snapshots', '--json']
          : command === 'verify'
            ? ['verify', baseline]
            : command === 'restore'
              ? ['restore', baseline, '--yes']
              : ['backup', '--json'];
      const r = await runCli(args, env(proxy.host, extra), { timeoutMs: 240_000 });
      const retries = logLines(r.stderr).filter((l) => l.step === 'storage').length;
      console.log(
        `s3 fault "${rules.map((x) => `${x.op}:${x.fault.kind}`).join(',')}": exit ${r.code}, ${proxy.stats.injected} fault(s) injected, ${retries} retry log line(s), requests ${JSON.stringify(proxy.stats.requests)}`,
      );
      expect(proxy.stats.injected, 'no fault was injected').toBeGreaterThan(0);
      expect(await stack.states()).toEqual({ mariadb: 'running', moodle: 'running' });
      // Every multipart upload the server started was completed or aborted.
      expect(proxy.orphans()).toEqual([]);
      const after = await listed();
      expect(after.filter((s) => s.status !== 'ok')).toEqual([]);

      if (outcome === 'completes') {
        expect(r.code, r.stderr).toBe(0);
        if (!command) {
          const id = (JSON.parse(r.stdout) as { id: string }).id;
          expect(after.map((s) => s.id)).toContain(id);
          const v = await runCli(['verify', id], direct(), { timeoutMs: 120_000 });
          expect(v.code, v.stderr).toBe(0);
        }
        if (command === 'snapshots') expect(JSON.parse(r.stdout)).toEqual(after);
        return;
      }
      expect(r.code, r.stderr).toBe(6);
      const line = r.stderr.split('\n').find((l) => l.startsWith('error ['));
      expect(line).toMatch(new RegExp(`^error \\[STORAGE_FAILED\\]: S3 \\w+ s3://${bucket}/moodle/`));
      // No half snapshot: nothing new is listed, and nothing of the failed run is left behind.
      expect(after.map((s) => s.id).filter((id) => !before.has(id))).toEqual([]);
      if (command === 'restore') {
        expect(lifecycle(await projectEvents(stack.project, t0))).toEqual([]);
      } else if (proxy.stats.initiated.size > 0) {
        expect(proxy.stats.aborted.size).toBeGreaterThan(0);
      }
    },
    300_000,
  );
});

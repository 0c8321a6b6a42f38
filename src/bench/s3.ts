import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface BenchS3 {
  endpoint: string;
  bucket: string;
  /** Environment that points the sidecar at this server. */
  env: Record<string, string>;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * The S3 protocol server of the test harness (s3rver, a dev dependency) on 127.0.0.1, with one bucket.
 * Needs `--openssl-legacy-provider` (paged listings) and path-style, checksum-when-required clients.
 */
export async function startS3(workDir: string): Promise<BenchS3> {
  const dir = await mkdtemp(join(workDir, 's3rver-'));
  const port = await freePort();
  const bin = createRequire(import.meta.url).resolve('s3rver/bin/s3rver.js');
  const child: ChildProcess = spawn(
    process.execPath,
    ['--openssl-legacy-provider', bin, '-d', dir, '-a', '127.0.0.1', '-p', String(port), '--silent'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const endpoint = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      await Promise.race([new Promise((r) => child.once('exit', r)), sleep(5000)]);
    }
    await rm(dir, { recursive: true, force: true });
  };
  const bucket = 'bench';
  try {
    let up = false;
    for (let i = 0; i < 100 && !up; i++) {
      if (child.exitCode !== null) throw new Error(`s3rver exited: ${stderr}`);
      up = await fetch(endpoint).then(
        () => true,
        () => false,
      );
      if (!up) await sleep(100);
    }
    if (!up) throw new Error(`s3rver did not answer on ${endpoint}: ${stderr}`);
    // s3rver accepts unsigned requests: an anonymous PUT creates the bucket.
    const res = await fetch(`${endpoint}/${bucket}`, { method: 'PUT' });
    if (!res.ok) throw new Error(`could not create bucket: ${res.status} ${await res.text()}`);
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    endpoint,
    bucket,
    env: {
      AWS_S3_BUCKET_NAME: bucket,
      AWS_S3_PATH: 'bench',
      AWS_S3_PATH_STYLE: 'true',
      AWS_S3_CHECKSUMS: 'when_required',
      AWS_ENDPOINT: `127.0.0.1:${port}`,
      AWS_ENDPOINT_PROTO: 'http',
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
    },
    stop,
  };
}

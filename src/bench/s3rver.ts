import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * The S3 protocol server (s3rver, a dev dependency) in a child process on 127.0.0.1, shared by the bench and the
 * test harness. It needs `--openssl-legacy-provider` (else paged ListObjectsV2 answers 500), and a child keeps
 * its event loop away from the caller's.
 */
export interface S3rver {
  endpoint: string;
  port: number;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
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

/** Starts s3rver with its data in a new directory under `parentDir`; `stop()` ends it and removes the data. */
export async function startS3rver(parentDir: string, extraArgs: string[] = []): Promise<S3rver> {
  const dir = await mkdtemp(join(parentDir, 's3rver-'));
  const port = await freePort();
  const bin = createRequire(import.meta.url).resolve('s3rver/bin/s3rver.js');
  const child: ChildProcess = spawn(
    process.execPath,
    [
      '--openssl-legacy-provider',
      bin,
      '-d',
      dir,
      '-a',
      '127.0.0.1',
      '-p',
      String(port),
      '--silent',
      ...extraArgs,
    ],
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
  } catch (err) {
    await stop();
    throw err;
  }
  return { endpoint, port, stop };
}

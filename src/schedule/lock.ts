import { mkdir, open, readFile, rm } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { SidecarError } from '../errors.js';

interface LockInfo {
  pid: number;
  host: string;
  operation: string;
  since: string;
}

export interface RunLock {
  release(): Promise<void>;
}

/**
 * One run at a time, whether scheduled, label-triggered or `docker exec sidecar backup`: an exclusive lock
 * file in the state directory. A lock whose process is gone (crash) is taken over.
 */
export async function acquireRunLock(stateDir: string, operation: string): Promise<RunLock> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const file = join(stateDir, 'run.lock');
  const info: LockInfo = { pid: process.pid, host: hostname(), operation, since: new Date().toISOString() };
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fh = await open(file, 'wx', 0o600);
      await fh.writeFile(JSON.stringify(info));
      await fh.close();
      return {
        async release() {
          await rm(file, { force: true });
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = await readLock(file);
      if (holder && holder.host === info.host && isAlive(holder.pid)) {
        throw new SidecarError(
          'LOCKED',
          `another ${holder.operation} is running (pid ${holder.pid}, since ${holder.since})`,
          'wait for it to finish; runs never overlap',
        );
      }
      await rm(file, { force: true }); // stale: its process is gone
    }
  }
  throw new SidecarError(
    'LOCKED',
    `could not take the run lock ${file}`,
    'check the state directory permissions',
  );
}

async function readLock(file: string): Promise<LockInfo | null> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as LockInfo;
  } catch {
    return null;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Runs `fn` holding the one run lock shared by scheduled, label-triggered and `docker exec` runs. */
export async function withRunLock<T>(
  ctx: { config: { stateDir: string } },
  operation: string,
  fn: () => Promise<T>,
): Promise<T> {
  let lock: RunLock;
  try {
    lock = await acquireRunLock(ctx.config.stateDir, operation);
  } catch (err) {
    if (err instanceof SidecarError) throw err;
    throw new SidecarError(
      'LOCKED',
      `cannot take the run lock in ${ctx.config.stateDir}: ${(err as Error).message}`,
    );
  }
  try {
    return await fn();
  } finally {
    await lock.release();
  }
}

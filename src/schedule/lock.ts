import { randomBytes } from 'node:crypto';
import { link, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { SidecarError } from '../common/errors.js';
import { currentOwner, legacyOwner, type Owner, ownerLiveness } from '../common/owner.js';
import { collectingYoung } from '../common/young-gc.js';

interface LockInfo {
  pid: number;
  host: string;
  /** Who holds it (common/owner.ts); locks written before it existed are judged by `host` and `pid`, the old rule. */
  owner?: Owner;
  operation: string;
  since: string;
}

export interface RunLock {
  release(): Promise<void>;
}

/**
 * One run at a time, whether scheduled, label-triggered or `docker exec sidecar backup`: an exclusive lock
 * file in the state directory. The file is created complete and atomically (written under a private name,
 * then hard-linked into place, which fails if a lock exists), so no process ever reads a half-written lock.
 * A lock whose process is gone (crash) is taken over by renaming it away first, so two processes that both
 * found it stale cannot both delete a fresh lock.
 */
export async function acquireRunLock(stateDir: string, operation: string): Promise<RunLock> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const file = join(stateDir, 'run.lock');
  const info: LockInfo = {
    pid: process.pid,
    host: hostname(),
    owner: currentOwner(),
    operation,
    since: new Date().toISOString(),
  };
  const mine = `${file}.${process.pid}-${randomBytes(4).toString('hex')}`;
  await writeFile(mine, JSON.stringify(info), { mode: 0o600 });
  try {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await link(mine, file);
        return {
          async release() {
            const holder = await readLock(file);
            if (holder?.pid === info.pid && holder.since === info.since) await rm(file, { force: true });
          },
        };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const holder = await readLock(file);
      // Another host's lock counts as stale: a recreated sidecar container has a new host name.
      if (!holder || ownerLiveness(holder.owner ?? legacyOwner(holder.pid, holder.host)) === 'alive') {
        const who = holder
          ? `another ${holder.operation} is running (pid ${holder.pid}, since ${holder.since})`
          : 'another run holds the lock';
        throw new SidecarError('LOCKED', who, 'wait for it to finish; runs never overlap');
      }
      // Stale: move it aside atomically; only the process whose rename succeeded removes it.
      const aside = `${file}.stale-${process.pid}-${randomBytes(4).toString('hex')}`;
      try {
        await rename(file, aside);
      } catch {
        continue; // someone else moved it first
      }
      const moved = await readLock(aside);
      if (moved && (moved.pid !== holder.pid || moved.since !== holder.since)) {
        // We moved a fresh lock taken in between (PIDs repeat in containers: `since` too tells them apart):
        // put it back if the place is still free.
        await link(aside, file).catch(() => undefined);
      }
      await rm(aside, { force: true });
    }
  } finally {
    await rm(mine, { force: true });
  }
  throw new SidecarError(
    'LOCKED',
    `could not take the run lock ${file}`,
    'another run is starting; try again',
  );
}

async function readLock(file: string): Promise<LockInfo | null> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as LockInfo;
  } catch {
    return null;
  }
}

/**
 * Runs `fn` holding the one run lock shared by scheduled, label-triggered and `docker exec` runs, its dead
 * buffers collected young (common/young-gc.ts): every run that moves a volume's bytes holds this lock.
 */
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
    return await collectingYoung(fn);
  } finally {
    await lock.release();
  }
}

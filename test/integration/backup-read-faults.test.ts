import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../harness/cli.js';
import { cliEnv, type TempDirs, tempDirs } from '../harness/config.js';
import { killLive, startCli } from '../harness/live.js';
import { type Proc, waitForChild } from '../harness/procs.js';
import { createMoodleStack, type MoodleStack } from '../harness/stack.js';

/**
 * The `mount` read path pipes GNU tar straight into zstd (volume/dir-tar-compressed.ts). If tar dies
 * mid-read, zstd sees a clean end of input and writes a valid frame: only tar's own exit status tells the
 * archive is truncated. If zstd dies, tar dies of the broken pipe. Either way the backup must fail with
 * STORAGE_FAILED naming the process that failed, the stack must run again, and no snapshot may exist.
 * zstd is stopped (SIGSTOP) first, so tar is held mid-volume and the kill always lands mid-read.
 */
const RUNNING = { mariadb: 'running', moodle: 'running' };

describe('a process of the read pipeline dying mid-read', () => {
  let stack: MoodleStack;
  let dirs: TempDirs;
  const stopped: number[] = [];

  beforeAll(async () => {
    [stack, dirs] = await Promise.all([
      createMoodleStack({ seed: { files: 20, bigMb: 48, users: 50, logs: 100 } }),
      tempDirs('rf'),
    ]);
  });
  afterAll(async () => {
    killLive();
    // A zstd left stopped by a failed test would never end by itself.
    for (const pid of stopped) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await stack?.remove();
    await dirs?.remove();
  });

  for (const victim of ['tar', 'zstd'] as const) {
    it(`${victim} killed: exit 6 STORAGE_FAILED naming ${victim}, stack running, no snapshot`, async () => {
      const target = join(dirs.root, `killed-${victim}`);
      // Whole archives: the store's own zstd processes (blob list, packs) would run beside tar's.
      const env = cliEnv(stack.project, dirs, {
        BACKUP_ARCHIVE: target,
        BACKUP_COMPRESSION: 'zstd',
        BACKUP_INCREMENTAL: 'off',
      });
      const run = startCli(['backup'], env, 180_000);
      const cli = run.child.pid as number;
      const isTar = (p: Proc) => p.argv[0] === 'tar' && p.argv.includes('--totals');
      const tar = await waitForChild(cli, 'tar -c --totals', isTar, 120_000);
      const zstd = await waitForChild(cli, 'zstd -T0', (p) => p.argv[0] === 'zstd' && p.argv.includes('-T0'));
      process.kill(zstd.pid, 'SIGSTOP');
      stopped.push(zstd.pid);
      if (victim === 'tar') {
        process.kill(tar.pid, 'SIGKILL');
        process.kill(zstd.pid, 'SIGCONT');
      } else {
        process.kill(zstd.pid, 'SIGKILL');
      }
      const r = await run.exited;
      expect(r.code, r.stderr).toBe(6);
      const error = r.stderr.split('\n').find((l) => l.startsWith('error ['));
      expect(error).toMatch(new RegExp(`^error \\[STORAGE_FAILED\\]: .*${victim} exited with SIGKILL`));
      expect(await stack.states()).toEqual(RUNNING);
      const list = await runCli(['snapshots', '--json'], { ...env });
      expect(list.code, list.stderr).toBe(0);
      expect(JSON.parse(list.stdout)).toEqual([]);
    });
  }

  it("the incremental store's tar killed while packing the new files: exit 6 STORAGE_FAILED naming tar, stack running, no snapshot", async () => {
    const target = join(dirs.root, 'killed-store-tar');
    const env = cliEnv(stack.project, dirs, { BACKUP_ARCHIVE: target, BACKUP_COMPRESSION: 'zstd' });
    const run = startCli(['backup'], env, 180_000);
    const cli = run.child.pid as number;
    // Before the stop, the first run packs every file: tar (-R: it lists where each member starts) into zstd.
    const tar = await waitForChild(
      cli,
      'tar -R of the store',
      (p) => p.argv[0] === 'tar' && p.argv.includes('-R'),
      120_000,
    );
    // Frozen the moment it is seen: it packs the 48 MB group in ~0.1 s, and looking for zstd next took
    // long enough, once, for tar to finish first (kill ESRCH).
    process.kill(tar.pid, 'SIGSTOP');
    stopped.push(tar.pid);
    const zstd = await waitForChild(cli, 'zstd -T0', (p) => p.argv[0] === 'zstd' && p.argv.includes('-T0'));
    process.kill(zstd.pid, 'SIGSTOP');
    stopped.push(zstd.pid);
    process.kill(tar.pid, 'SIGKILL');
    process.kill(zstd.pid, 'SIGCONT');
    const r = await run.exited;
    expect(r.code, r.stderr).toBe(6);
    const error = r.stderr.split('\n').find((l) => l.startsWith('error ['));
    expect(error).toMatch(
      /^error \[STORAGE_FAILED\]: storing the dataroot's files failed: .*tar exited with SIGKILL/,
    );
    expect(await stack.states()).toEqual(RUNNING);
    const list = await runCli(['snapshots', '--json'], { ...env });
    expect(list.code, list.stderr).toBe(0);
    expect(JSON.parse(list.stdout)).toEqual([]);
  });
});

import { execFileSync } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
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
  /** Processes left stopped by a test that failed midway; one is taken off once it runs on or is killed. */
  const stopped: number[] = [];
  // Its pid may be reused once it has exited: afterAll must not signal it.
  const released = (pid: number) => stopped.splice(stopped.indexOf(pid), 1);

  beforeAll(async () => {
    [stack, dirs] = await Promise.all([
      createMoodleStack({ seed: { files: 20, bigMb: 24, users: 50, logs: 100 } }),
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
      released(zstd.pid);
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
    // Before the stop, the first run packs every file: tar (-R: it lists where each member starts) into zstd.
    // That tar lives ~0.1 s; polling for it lost the race under CI load (kill ESRCH once, never seen once).
    // So a tar earlier on the CLI's PATH stops itself (SIGSTOP) before it becomes the real tar when it is
    // the store's, and the kill lands on it whatever the timing; every other tar runs as it is.
    const shim = join(dirs.root, 'shim');
    const pidFile = join(shim, 'store-tar.pid');
    const realTar = execFileSync('sh', ['-c', 'command -v tar'], { encoding: 'utf8' }).trim();
    await mkdir(shim, { recursive: true });
    await writeFile(
      join(shim, 'tar'),
      `#!/bin/sh\ncase " $* " in *" -R "*) echo $$ > ${pidFile}; kill -STOP $$ ;; esac\nexec ${realTar} "$@"\n`,
      { mode: 0o755 },
    );
    const run = startCli(['backup'], { ...env, PATH: `${shim}:${env.PATH ?? ''}` }, 180_000);
    const tar = await stoppedPid(pidFile, 120_000);
    stopped.push(tar);
    process.kill(tar, 'SIGKILL');
    released(tar);
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

/** The pid written to `file` once that process has stopped itself (state T in /proc). */
async function stoppedPid(file: string, timeoutMs: number): Promise<number> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const pid = Number((await readFile(file, 'utf8').catch(() => '')).trim());
    const stat = pid > 0 ? await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '') : '';
    // The state is the field after the command's closing parenthesis.
    if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('T')) return pid;
    await sleep(20);
  }
  throw new Error(`no stopped process in ${file} within ${timeoutMs} ms`);
}

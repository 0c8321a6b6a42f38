import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { type CliResult, logLines, runCli } from '../harness/cli.js';
import { cliEnv, type TempDirs, tempDirs } from '../harness/config.js';
import { docker, execOk } from '../harness/docker.js';
import { lifecycle, projectEvents } from '../harness/events.js';
import { killLive, readState, startCli } from '../harness/live.js';
import { createTestBucket, s3Env, s3Host } from '../harness/s3.js';
import { createMoodleStack, type MoodleStack } from '../harness/stack.js';
import { Figures } from './figures.js';

/**
 * Local faults: a full target or spool disk (a small tmpfs), a read-only target, no Docker socket, a missing
 * volume, a container removed mid-run. Each must end in a clear error (code and exit status), with the stack
 * running and no snapshot that looks complete.
 */
const RUNNING = { mariadb: 'running', moodle: 'running' };

function errorLine(r: CliResult): string {
  return (
    r.stderr.split('\n').find((l) => l.startsWith('error [')) ?? `(no error line)\n${r.stderr.slice(-2000)}`
  );
}

describe('local faults', () => {
  let stack: MoodleStack;
  let dirs: TempDirs;
  let bucket: string;
  const mounts: string[] = [];
  const figures = new Figures('local faults', 'clean');

  /** A tmpfs of `size` at a fresh directory (we run as root, as CI does). */
  async function tmpfs(name: string, opts: string): Promise<string> {
    const dir = join(dirs.root, name);
    await mkdir(dir, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', opts, 'tmpfs', dir]);
    mounts.push(dir);
    return dir;
  }

  beforeAll(async () => {
    [stack, dirs, bucket] = await Promise.all([
      createMoodleStack({ seed: { files: 20, bigMb: 12, users: 100, logs: 200 } }),
      tempDirs('lf'),
      createTestBucket('lf'),
    ]);
  });
  afterAll(async () => {
    killLive();
    figures.save();
    for (const m of mounts.reverse()) {
      try {
        execFileSync('umount', [m]);
      } catch {
        execFileSync('umount', ['-l', m]);
      }
    }
    await stack?.remove();
    await dirs?.remove();
  });

  /** No snapshot of any status at a local target directory. */
  async function noSnapshot(dir: string): Promise<void> {
    const r = await runCli(['snapshots', '--json'], cliEnv(stack.project, dirs, { BACKUP_ARCHIVE: dir }));
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual([]);
  }

  figures.it(
    'target disk full (4 MiB tmpfs): STORAGE_FAILED exit 6 naming ENOSPC, stack running, nothing left on the disk',
    async () => {
      const target = await tmpfs('full-target', 'size=4m,mode=0700');
      const r = await runCli(['backup'], cliEnv(stack.project, dirs, { BACKUP_ARCHIVE: target }), {
        timeoutMs: 120_000,
      });
      expect(r.code, r.stderr).toBe(6);
      expect(errorLine(r)).toMatch(/^error \[STORAGE_FAILED\]: .*(ENOSPC|no space)/i);
      expect(await stack.states()).toEqual(RUNNING);
      await noSnapshot(target);
      expect(await readdir(target, { recursive: true })).toEqual([]);
      expect(existsSync(join(dirs.state, 'state.json'))).toBe(false);
    },
  );

  figures.it(
    'target fills after the new blobs were stored (a 24 MB file outside filedir/): exit 6, no snapshot, only whole indexed packs left, which the next run reuses',
    async () => {
      const target = await tmpfs('fills-target', 'size=16m,mode=0700');
      const extra = '/bitnami/moodledata/repository/course-24mb.mbz';
      await execOk(stack.containers.moodle, ['sh', '-c', `head -c 25165824 /dev/urandom >${extra}`]);
      try {
        const env = cliEnv(stack.project, dirs, { BACKUP_ARCHIVE: target });
        const r = await runCli(['backup'], env, { timeoutMs: 120_000 });
        expect(r.code, r.stderr).toBe(6);
        expect(errorLine(r)).toMatch(/^error \[STORAGE_FAILED\]: .*(ENOSPC|no space)/i);
        expect(await stack.states()).toEqual(RUNNING);
        await noSnapshot(target);
        // Packs stored before the tarball hit the full disk stay, with the index naming them (the next run
        // need not read their blobs again). Each file is whole: named by the sha256 of its bytes. Nothing else.
        const left = (await readdir(target, { recursive: true, withFileTypes: true })).filter((e) =>
          e.isFile(),
        );
        const kinds = left.map((e) => relative(target, e.parentPath).split(sep).slice(0, 2).join('/'));
        expect(kinds).toContain('store/packs');
        expect(kinds).toContain('store/index');
        expect(kinds.filter((k) => k !== 'store/packs' && k !== 'store/index')).toEqual([]);
        for (const e of left) {
          const bytes = await readFile(join(e.parentPath, e.name));
          expect(createHash('sha256').update(bytes).digest('hex')).toBe(e.name);
        }

        execFileSync('mount', ['-o', 'remount,size=96m', target]);
        const again = await runCli(['backup'], env, { timeoutMs: 120_000 });
        expect(again.code, again.stderr).toBe(0);
        const before = logLines(again.stderr).find((l) => l.step === 'store' && l.phase === 'before-stop');
        expect(before?.listed).toBeGreaterThan(0);
        expect(before?.blobs).toBe(0);
        const verified = await runCli(['verify', '--read-data'], env, { timeoutMs: 120_000 });
        expect(verified.code, verified.stderr).toBe(0);
      } finally {
        await execOk(stack.containers.moodle, ['rm', '-f', extra]);
      }
    },
  );

  figures.it(
    'spool disk full (S3 target, 4 MiB tmpfs spool): STORAGE_FAILED exit 6 naming the spool, stack running, nothing uploaded',
    async () => {
      const spool = await tmpfs('full-spool', 'size=4m,mode=0700');
      const env = s3Env(stack, dirs, bucket, s3Host(), { BACKUP_SPOOL_DIR: spool });
      const r = await runCli(['backup'], env, { timeoutMs: 120_000 });
      expect(r.code, r.stderr).toBe(6);
      expect(errorLine(r)).toMatch(/^error \[STORAGE_FAILED\]: .*spool.*(ENOSPC|no space)/i);
      expect(errorLine(r)).toContain('BACKUP_SPOOL_DIR');
      expect(await stack.states()).toEqual(RUNNING);
      const listed = await runCli(['snapshots', '--json'], env);
      expect(JSON.parse(listed.stdout)).toEqual([]);
      expect(await readdir(spool, { recursive: true })).toEqual([]);
    },
  );

  figures.it('target read-only: STORAGE_FAILED exit 6 naming the target, stack running', async () => {
    const target = await tmpfs('ro-target', 'size=1m,ro');
    const r = await runCli(['backup'], cliEnv(stack.project, dirs, { BACKUP_ARCHIVE: target }), {
      timeoutMs: 120_000,
    });
    expect(r.code, r.stderr).toBe(6);
    expect(errorLine(r)).toMatch(/^error \[STORAGE_FAILED\]: .*(EROFS|read-only)/i);
    expect(errorLine(r)).toContain(target);
    expect(await stack.states()).toEqual(RUNNING);
    await noSnapshot(target);
  });

  figures.it(
    'Docker socket gone (DOCKER_HOST at a dead socket): DOCKER_UNAVAILABLE exit 4, nothing stopped',
    async () => {
      await sleep(1100);
      const t0 = Date.now();
      const dead = `unix://${join(dirs.root, 'no-docker.sock')}`;
      const r = await runCli(['backup'], cliEnv(stack.project, dirs, { DOCKER_HOST: dead }), {
        timeoutMs: 60_000,
      });
      expect(r.code, r.stderr).toBe(4);
      expect(errorLine(r)).toMatch(/^error \[DOCKER_UNAVAILABLE\]: /);
      expect(errorLine(r)).toContain('no-docker.sock');
      expect(lifecycle(await projectEvents(stack.project, t0))).toEqual([]);
      expect(await stack.states()).toEqual(RUNNING);
    },
  );

  figures.it('a volume that does not exist: VOLUME_NOT_FOUND exit 4 naming it, nothing stopped', async () => {
    await sleep(1100);
    const t0 = Date.now();
    const r = await runCli(
      ['backup'],
      cliEnv(stack.project, dirs, { BACKUP_VOLUMES: 'moodledata_data,ghost_data' }),
      {
        timeoutMs: 60_000,
      },
    );
    expect(r.code, r.stderr).toBe(4);
    expect(errorLine(r)).toMatch(/^error \[VOLUME_NOT_FOUND\]: .*ghost_data/);
    expect(lifecycle(await projectEvents(stack.project, t0))).toEqual([]);
    expect(await stack.states()).toEqual(RUNNING);
  });

  // Last: it leaves the stack without its Moodle container.
  figures.it(
    'the Moodle container removed while stopped for the backup: RESUME_FAILED exit 5 naming it, MariaDB running, no snapshot, the next run is not blocked',
    async () => {
      const target = join(dirs.root, 'removed');
      const env = cliEnv(stack.project, dirs, { BACKUP_ARCHIVE: target, BACKUP_COMPRESSION: 'gzip' });
      const run = startCli(['backup'], env);
      await run.waitFor(
        'both stopped',
        async () => ((await readState(dirs))?.quiesced.length ?? 0) >= 2,
        60_000,
      );
      await docker().getContainer(stack.containers.moodle).remove({ force: true, v: true });
      const r = await run.exited;
      expect(r.code, r.stderr).toBe(5);
      expect(errorLine(r)).toMatch(
        new RegExp(
          `^error \\[RESUME_FAILED\\]: could not restart ${stack.containers.moodle}: .*was removed while it was stopped`,
        ),
      );
      const mariadb = await docker().getContainer(stack.containers.mariadb).inspect();
      expect(mariadb.State.Status).toBe('running');
      await noSnapshot(target);
      // The next run must not trip over the removed container again (the state file may still hold the
      // maintenance mode that could not be turned off in the removed container; the next start retries it once).
      const next = await runCli(
        ['backup', '--json'],
        { ...env, BACKUP_VOLUMES: 'mariadb_data' },
        { timeoutMs: 120_000 },
      );
      expect(next.code, next.stderr).toBe(0);
      expect(existsSync(join(dirs.state, 'state.json'))).toBe(false);
    },
  );
});

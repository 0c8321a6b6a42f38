import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { listSnapshots } from '../../src/archive/catalog.js';
import { HELPER_LABEL } from '../../src/docker/labels.js';
import { createBackend } from '../../src/storage/index.js';
import { logLines, runCli } from '../harness/cli.js';
import { cliEnv, type TempDirs, tempDirs } from '../harness/config.js';
import { docker, IMAGES, TEST_LABEL, uniqueName } from '../harness/docker.js';
import { killLive, type LogLine, msUntilRunning, startCli } from '../harness/live.js';
import { flagInVolume } from '../harness/moodle.js';
import { createMoodleStack, type MoodleStack } from '../harness/stack.js';

/** The lock-race contenders still running (afterAll kills them). */
const contenders = new Set<ChildProcess>();

/** Helper containers (label moodle-backup.helper) that mount one of the stack's volumes. */
async function helpersOf(stack: MoodleStack): Promise<string[]> {
  const vols = new Set<string>(Object.values(stack.volumes));
  const list = await docker().listContainers({ all: true, filters: { label: [HELPER_LABEL] } });
  return list
    .filter((c) => (c.Mounts ?? []).some((m) => m.Name && vols.has(m.Name)))
    .map((c) => c.Names[0] ?? c.Id);
}

/**
 * A helper container as another sidecar's running backup has it (another Moodle project on the same host):
 * created, never started, mounting that project's volume read-only.
 */
async function foreignHelper(): Promise<{ name: string; volume: string }> {
  const volume = uniqueName('othervol');
  await docker().createVolume({ Name: volume, Labels: { [TEST_LABEL]: inject('runId') } });
  const name = uniqueName('other-helper');
  await docker().createContainer({
    name,
    Image: IMAGES.busybox,
    Cmd: ['true'],
    Labels: { [HELPER_LABEL]: 'true', [TEST_LABEL]: inject('runId') },
    HostConfig: { Binds: [`${volume}:/volume:ro`], NetworkMode: 'none' },
  });
  return { name, volume };
}

/** Every file below `dir` (relative paths), including hidden temp files the catalog does not show. */
async function filesBelow(dir: string): Promise<string[]> {
  if (!existsSync(dir)) return [];
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath ?? e.path, e.name).slice(dir.length + 1));
}

describe('interrupted and concurrent backups', () => {
  let stack: MoodleStack;
  let dirs: TempDirs;
  let killedAndRecovered = false;
  let other: { name: string; volume: string } | undefined;

  beforeAll(async () => {
    [stack, dirs] = await Promise.all([createMoodleStack({ seed: { bigMb: 300 } }), tempDirs('intr')]);
  }, 300_000);
  afterAll(async () => {
    killLive();
    for (const c of contenders) c.kill('SIGKILL');
    // Helpers carry no compose label: remove those on the stack's volumes, else the volumes stay in use.
    if (stack) {
      for (const name of await helpersOf(stack))
        await docker()
          .getContainer(name.replace(/^\//, ''))
          .remove({ force: true })
          .catch(() => undefined);
    }
    if (other) {
      await docker()
        .getContainer(other.name)
        .remove({ force: true })
        .catch(() => undefined);
      await docker()
        .getVolume(other.volume)
        .remove()
        .catch(() => undefined);
    }
    await stack?.remove();
    await dirs?.remove();
  });

  const env = (archive: string, extra: Record<string, string> = {}) =>
    cliEnv(stack.project, dirs, { BACKUP_ARCHIVE: archive, ...extra });

  it.each([
    {
      when: 'while the stack is being stopped',
      at: 'first quiesce',
      pred: (l: LogLine) => l.step === 'quiesce',
    },
    {
      when: 'while moodledata_data is streaming',
      at: 'read of moodle_data',
      pred: (l: LogLine) => l.step === 'read' && l.volume === 'moodle_data',
    },
  ])(
    'SIGTERM $when: exit 130, stack running within seconds, no snapshot, no helper left',
    async ({ at, pred }) => {
      const archive = join(dirs.root, `term-${at.replace(/\W+/g, '-')}`);
      const run = startCli(['backup'], env(archive, { BACKUP_COMPRESSION: 'gzip' }), 240_000);
      await run.waitForLog(at, pred, 120_000);
      const killedAt = Date.now();
      run.child.kill('SIGTERM');
      const r = await Promise.race([
        run.exited,
        sleep(90_000).then(() => {
          run.child.kill('SIGKILL');
          throw new Error(`the CLI did not exit within 90 s of SIGTERM:\n${run.stderr()}`);
        }),
      ]);
      const resumeMs = await msUntilRunning(stack, killedAt);
      const exitMs = Date.now() - killedAt;
      console.log(
        `SIGTERM ${at}: stack running ${resumeMs} ms after the signal; exit ${r.code} (${exitMs} ms)`,
      );
      expect(resumeMs).toBeLessThan(20_000);
      expect(await stack.states()).toEqual({ mariadb: 'running', moodle: 'running' });
      expect(await listSnapshots(createBackend({ type: 'local', path: archive }))).toEqual([]);
      // Moodle files stored before the stop stay in store/ (the next backup reuses them; prune sweeps what no
      // snapshot ever references); nothing else may be left.
      expect((await filesBelow(archive)).filter((f) => !f.startsWith('store/'))).toEqual([]);
      expect(await helpersOf(stack)).toEqual([]);
      expect(existsSync(join(dirs.state, 'state.json'))).toBe(false);
      expect(logLines(r.stderr).some((l) => l.step === 'resumed')).toBe(true);
      // Maintenance mode went on before the stop and is off again after the signal.
      expect(logLines(r.stderr).some((l) => l.msg === 'maintenance mode on')).toBe(true);
      expect(await flagInVolume(stack.volumes.moodledata_data)).toBe(false);
      expect(r.signal).toBeNull();
      expect(r.stderr).toMatch(/error \[INTERRUPTED\]: interrupted by SIGTERM/);
      expect(r.code).toBe(130);
    },
    240_000,
  );

  it('SIGKILL mid-backup: the next `backup` resumes the stack first, then backs up; the killed run is not ok', async () => {
    const archive = join(dirs.root, 'kill');
    const run = startCli(['backup'], env(archive, { BACKUP_COMPRESSION: 'gzip' }), 240_000);
    const plan = await run.waitForLog('plan', (l) => l.step === 'plan', 120_000);
    await run.waitForLog(
      'read of mariadb_data',
      (l) => l.step === 'read' && l.volume === 'mariadb_data',
      120_000,
    );
    run.child.kill('SIGKILL');
    const killed = await run.exited;
    expect(killed.signal).toBe('SIGKILL');
    const killedId = String(plan.snapshot);
    // Left behind: the stack stopped, and the state file that says so.
    expect(await stack.states()).toEqual({ mariadb: 'exited', moodle: 'exited' });
    expect(existsSync(join(dirs.state, 'state.json'))).toBe(true);
    // ... and the site in maintenance mode, which the state file records for the recovery.
    expect(await flagInVolume(stack.volumes.moodledata_data)).toBe(true);
    expect(JSON.parse(readFileSync(join(dirs.state, 'state.json'), 'utf8')).maintenance?.name).toBe(
      stack.containers.moodle,
    );

    // `snapshots` needs no Docker and recovers nothing; it shows the killed run as incomplete.
    const listed = await runCli(['snapshots', '--json'], env(archive), { timeoutMs: 60_000 });
    expect(listed.code, listed.stderr).toBe(0);
    const before = JSON.parse(listed.stdout) as { id: string; status: string }[];
    expect(before.map((s) => [s.id, s.status])).toEqual([[killedId, 'incomplete']]);

    other = await foreignHelper();
    const t0 = Date.now();
    const r = await runCli(['backup', '--json'], env(archive), { timeoutMs: 180_000 });
    expect(r.code, r.stderr).toBe(0);
    const logs = logLines(r.stderr);
    const recover = logs.findIndex((l) => l.step === 'recover');
    expect(recover, 'no recover log line').toBeGreaterThanOrEqual(0);
    expect(recover).toBeLessThan(logs.findIndex((l) => l.step === 'plan'));
    expect(logs[recover]?.runId).toBe(killedId);
    expect([...((logs[recover]?.containers as string[]) ?? [])].sort()).toEqual(
      [stack.containers.mariadb, stack.containers.moodle].sort(),
    );
    console.log(`SIGKILL recovery + backup: ${Date.now() - t0} ms`);
    expect(await stack.states()).toEqual({ mariadb: 'running', moodle: 'running' });
    expect(existsSync(join(dirs.state, 'state.json'))).toBe(false);
    // The recovery turned the killed run's maintenance mode off before the new run started.
    const off = logs.findIndex((l) => l.step === 'recover' && /maintenance mode/.test(String(l.msg)));
    expect(off, 'no recovery of maintenance mode').toBeGreaterThan(recover);
    expect(off).toBeLessThan(logs.findIndex((l) => l.step === 'plan'));
    expect(await flagInVolume(stack.volumes.moodledata_data)).toBe(false);

    const newId = (JSON.parse(r.stdout) as { id: string }).id;
    const snaps = await listSnapshots(createBackend({ type: 'local', path: archive }));
    expect(snaps.filter((s) => s.status === 'ok').map((s) => s.id)).toEqual([newId]);
    expect(snaps.find((s) => s.id === killedId)?.status ?? 'absent').toMatch(/^(incomplete|absent)$/);
    killedAndRecovered = true;
  }, 360_000);

  it('after that SIGKILL, no helper container of the killed run is left mounting a volume', async () => {
    expect(killedAndRecovered, 'runs after the SIGKILL test').toBe(true);
    // A leftover helper (created, never started) keeps the volume in use: `docker volume rm` and
    // `docker compose down -v` fail on it. The recovering run is the one that could remove it.
    expect(await helpersOf(stack)).toEqual([]);
  });

  it("the recovery removes only the killed run's helpers: another project's running backup keeps its helper", async () => {
    expect(killedAndRecovered && other, 'runs after the SIGKILL test').toBeTruthy();
    const name = other?.name ?? '';
    const alive = await docker()
      .getContainer(name)
      .inspect()
      .then(
        () => true,
        () => false,
      );
    expect(alive, `${name} (helper of another sidecar's backup) was removed`).toBe(true);
  });

  it('two concurrent `backup` runs on one state dir: exactly one succeeds, the other exits 3', async () => {
    const archive = join(dirs.root, 'lock');
    const [a, b] = await Promise.all([
      runCli(['backup'], env(archive), { timeoutMs: 180_000 }),
      runCli(['backup'], env(archive), { timeoutMs: 180_000 }),
    ]);
    const codes = [a.code, b.code].sort();
    expect(codes, `${a.stderr}\n---\n${b.stderr}`).toEqual([0, 3]);
    const loser = a.code === 3 ? a : b;
    expect(loser.stderr).toMatch(/error \[LOCKED\]: another backup is running \(pid \d+/);
    expect(logLines(loser.stderr).some((l) => l.step === 'quiesce')).toBe(false);
    const snaps = await listSnapshots(createBackend({ type: 'local', path: archive }));
    expect(snaps.map((s) => s.status)).toEqual(['ok']);
    expect(await stack.states()).toEqual({ mariadb: 'running', moodle: 'running' });
    expect(existsSync(join(dirs.state, 'run.lock'))).toBe(false);
  }, 240_000);

  it('processes racing for the run lock at the same instant: never more than one holds it', async () => {
    const lockModule = new URL('../../dist/schedule/lock.js', import.meta.url).href;
    // Each contender sleeps, then spins for the last 20 ms up to a common start time, tries the lock and
    // holds it for 300 ms; it prints when it held it, so overlapping holds can be told from sequential ones.
    const script = `
      const { acquireRunLock } = await import(${JSON.stringify(lockModule)});
      const [dir, at] = process.argv.slice(1).map(String);
      await new Promise((r) => setTimeout(r, Math.max(0, Number(at) - 20 - Date.now())));
      while (Date.now() < Number(at)) {}
      try {
        const l = await acquireRunLock(dir, 'backup');
        const t0 = Date.now();
        await new Promise((r) => setTimeout(r, 300));
        const t1 = Date.now();
        await l.release();
        console.log('got ' + t0 + ' ' + t1);
      } catch (e) { console.log(e.code === 'LOCKED' ? 'locked' : 'error ' + e.message); }`;
    const contend = (dir: string, at: number) =>
      new Promise<string>((resolve, reject) => {
        const c = spawn(process.execPath, ['--input-type=module', '-e', script, dir, String(at)], {
          stdio: ['ignore', 'pipe', 'inherit'],
        });
        contenders.add(c);
        let out = '';
        c.stdout?.on('data', (d: Buffer) => {
          out += d.toString();
        });
        const timer = setTimeout(() => c.kill('SIGKILL'), 20_000);
        c.on('error', reject);
        c.on('close', () => {
          clearTimeout(timer);
          contenders.delete(c);
          resolve(out.trim());
        });
      });
    const root = await mkdtemp(join(tmpdir(), 'mbst-lockrace-'));
    const doubles: number[] = [];
    try {
      for (let round = 0; round < 25; round++) {
        const dir = join(root, String(round));
        const at = Date.now() + 600;
        const outs = await Promise.all([0, 1, 2, 3].map(() => contend(dir, at)));
        expect(
          outs.every((o) => o.startsWith('got ') || o === 'locked'),
          outs.join(', '),
        ).toBe(true);
        const holds = outs
          .filter((o) => o.startsWith('got '))
          .map((o) => o.split(' ').slice(1).map(Number) as [number, number])
          .sort((x, y) => x[0] - y[0]);
        let heldUntil = 0;
        for (const [from, to] of holds) {
          if (from < heldUntil) doubles.push(round);
          heldUntil = Math.max(heldUntil, to);
        }
      }
    } finally {
      await rm(root, { recursive: true, force: true });
    }
    expect(doubles, 'rounds in which two processes held the lock at once').toEqual([]);
  }, 120_000);
});

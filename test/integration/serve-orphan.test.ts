import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listSnapshots } from '../../src/archive/catalog.js';
import { ownerOf } from '../../src/common/owner.js';
import { LocalBackend } from '../../src/storage/local.js';
import { logLines, runCli } from '../harness/cli.js';
import { cliEnv, type TempDirs, tempDirs } from '../harness/config.js';
import { docker } from '../harness/docker.js';
import { type LiveCli, startCli } from '../harness/live.js';
import { freePort } from '../harness/s3-server.js';
import { type ServeProcess, startServe, until } from '../harness/serve.js';
import { createMoodleStack, type MoodleStack } from '../harness/stack.js';

interface Health {
  status: string;
  reason?: string;
}

/**
 * A run killed beside a `serve` that keeps running, with nothing scheduled: only serve's periodic look at the
 * state file can bring the stack back, and /healthz says the site is down until it does. Then what a
 * container restart does to PIDs, played on the host: a lock and a state file naming a live PID that is not
 * the process that wrote them.
 */
describe('serve recovers an orphaned run within seconds; PIDs that came back do not own anything', () => {
  let stack: MoodleStack;
  let dirs: TempDirs;
  let env: NodeJS.ProcessEnv;
  let serve: ServeProcess | undefined;
  let cli: LiveCli | undefined;
  let sleeper: ChildProcess | undefined;

  beforeAll(async () => {
    [stack, dirs] = await Promise.all([
      createMoodleStack({ seed: { files: 10, blobKb: 4, bigMb: 1, users: 100, logs: 200 } }),
      tempDirs('serve-orphan'),
    ]);
    env = cliEnv(stack.project, dirs, { BACKUP_COMPRESSION: 'gzip' });
  });

  afterAll(async () => {
    if (cli && !cli.ended()) cli.child.kill('SIGKILL');
    sleeper?.kill('SIGKILL');
    await serve?.stop(10_000);
    await stack?.remove();
    await dirs?.remove();
  });

  it('a killed `backup` beside serve: /healthz 503 "down" with the reason, stack back, 200 again', {
    timeout: 180_000,
  }, async () => {
    const port = await freePort();
    serve = startServe({ ...env, BACKUP_HEALTH_PORT: String(port), BACKUP_HEALTH_HOST: '127.0.0.1' });
    const s = serve;
    await until(
      'serve to listen',
      async () => (s.log().includes('health and metrics on') ? true : undefined),
      30_000,
    );
    const health = async (): Promise<{ code: number; body: Health }> => {
      const r = await fetch(`http://127.0.0.1:${port}/healthz`);
      return { code: r.status, body: (await r.json()) as Health };
    };
    expect((await health()).code).toBe(200);

    cli = startCli(['backup'], env, 120_000);
    const plan = await cli.waitForLog('plan', (l) => l.step === 'plan', 60_000);
    await cli.waitForLog(
      'read of mariadb_data',
      (l) => l.step === 'read' && l.volume === 'mariadb_data',
      60_000,
    );
    cli.child.kill('SIGKILL');
    await cli.exited;
    const killedAt = Date.now();
    expect(await stack.states()).toEqual({ mariadb: 'exited', moodle: 'exited' });

    // Poll /healthz until the stack runs again and it answers 200: it must have said 503 "down" meanwhile.
    const seen: { code: number; body: Health }[] = [];
    const recoveredMs = await until(
      '/healthz 200 with the stack running again',
      async () => {
        const h = await health();
        seen.push(h);
        const st = await stack.states();
        return h.code === 200 && st.mariadb === 'running' && st.moodle === 'running'
          ? Date.now() - killedAt
          : undefined;
      },
      30_000,
      50,
    );
    const down = seen.find((h) => h.code === 503);
    expect(down?.body.status, JSON.stringify(seen.slice(0, 5))).toBe('down');
    expect(down?.body.reason).toContain(`an interrupted backup (run ${plan.snapshot})`);
    expect(down?.body.reason).toContain(stack.containers.mariadb);
    console.log(`serve recovered the killed backup ${recoveredMs} ms after the kill (check every 2 s)`);
    expect(recoveredMs).toBeLessThan(10_000);

    const recover = logLines(s.log()).find((l) => l.step === 'recover' && l.runId === plan.snapshot);
    expect(recover, s.log().slice(-3000)).toBeDefined();
    expect(s.child.exitCode).toBeNull();
    expect(existsSync(join(dirs.state, 'state.json'))).toBe(false);
    const snaps = await listSnapshots(new LocalBackend(dirs.archive));
    expect(
      snaps.find((x) => x.id === plan.snapshot),
      'the killed run is still listed',
    ).toBeUndefined();
    // The dead run's lock is no obstacle.
    const next = await runCli(['backup'], env);
    expect(next.code, next.stderr.slice(-2000)).toBe(0);
    expect(await stack.states()).toEqual({ mariadb: 'running', moodle: 'running' });
    expect((await health()).code).toBe(200);
    expect(await s.stop(), s.log().slice(-3000)).toBe(0);
    serve = undefined;
  });

  it('a lock and a state file naming a live PID with another start time are a dead run’s', {
    timeout: 120_000,
  }, async () => {
    // A live process whose PID the "dead run" had: after a container restart, e.g. the new `serve`.
    sleeper = spawn('sleep', ['120'], { stdio: 'ignore' });
    const live = ownerOf(sleeper.pid as number);
    const forged = { ...live, startTime: String(BigInt(live.startTime as string) - 1n) };
    const since = new Date(Date.now() - 60_000).toISOString();
    await mkdir(dirs.state, { recursive: true });
    await writeFile(
      join(dirs.state, 'run.lock'),
      JSON.stringify({ pid: forged.pid, host: forged.host, owner: forged, operation: 'backup', since }),
    );
    // What the dead run had stopped, as its state file says.
    for (const name of [stack.containers.moodle, stack.containers.mariadb])
      await docker().getContainer(name).stop({ t: 30 });
    const quiesced = await Promise.all(
      [stack.containers.moodle, stack.containers.mariadb].map(async (name) => ({
        id: (await docker().getContainer(name).inspect()).Id,
        name,
        action: 'stop',
      })),
    );
    await writeFile(
      join(dirs.state, 'state.json'),
      JSON.stringify({
        runId: 'forged-run',
        operation: 'backup',
        startedAt: since,
        pid: forged.pid,
        owner: forged,
        quiesced,
      }),
    );
    const r = await runCli(['backup'], env);
    expect(r.code, r.stderr.slice(-2000)).toBe(0);
    expect(logLines(r.stderr).find((l) => l.step === 'recover' && l.runId === 'forged-run')).toBeDefined();
    expect(await stack.states()).toEqual({ mariadb: 'running', moodle: 'running' });
    expect(existsSync(join(dirs.state, 'run.lock'))).toBe(false);
  });
});

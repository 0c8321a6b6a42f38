import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listSnapshots } from '../../src/archive/catalog.js';
import { LocalBackend } from '../../src/storage/local.js';
import { logLines } from '../harness/cli.js';
import { cliEnv, type TempDirs, tempDirs } from '../harness/config.js';
import { type LiveCli, startCli } from '../harness/live.js';
import { type ServeProcess, startServeReady, until } from '../harness/serve.js';
import { createMoodleStack, type MoodleStack } from '../harness/stack.js';

/**
 * A `docker exec <sidecar> backup` killed while `serve` keeps running: no command start will recover it, so
 * the next scheduled run must, before it backs up — resume the stack and discard the killed run's files.
 */
describe('serve recovers a `docker exec … backup` killed beside it', () => {
  let stack: MoodleStack;
  let dirs: TempDirs;
  let serve: ServeProcess;
  let env: NodeJS.ProcessEnv;
  let cli: LiveCli | undefined;

  beforeAll(async () => {
    [stack, dirs] = await Promise.all([
      createMoodleStack({ seed: { files: 10, blobKb: 4, bigMb: 1, users: 100, logs: 200 } }),
      tempDirs('serve-recovery'),
    ]);
    env = cliEnv(stack.project, dirs, { BACKUP_CRON_EXPRESSION: '*/4 * * * * *', BACKUP_KEEP_LAST: '20' });
  });

  afterAll(async () => {
    if (cli && !cli.ended()) cli.child.kill('SIGKILL');
    await serve?.stop(10_000);
    await stack?.remove();
    await dirs?.remove();
  });

  it('the next scheduled run resumes the stack and removes the killed run’s partial snapshot', {
    timeout: 240_000,
  }, async () => {
    serve = await startServeReady(env);

    // Started between two scheduled runs; refused with exit 3 while one of them holds the run lock.
    const killedId = await until(
      'a CLI backup killed while the stack is stopped',
      async () => {
        const run = startCli(['backup'], { ...env, BACKUP_COMPRESSION: 'gzip' }, 120_000);
        cli = run;
        try {
          const plan = await run.waitForLog('plan', (l) => l.step === 'plan', 60_000);
          await run.waitForLog(
            'read of mariadb_data',
            (l) => l.step === 'read' && l.volume === 'mariadb_data',
            60_000,
          );
          run.child.kill('SIGKILL');
          await run.exited;
          return String(plan.snapshot);
        } catch (err) {
          if ((await run.exited).code === 3) return undefined;
          throw err;
        }
      },
      90_000,
      100,
    );
    const killedAt = Date.now();
    const backend = new LocalBackend(dirs.archive);
    // What the kill left: the stack stopped, the state file, and the snapshot's files without a manifest.
    expect(await stack.states()).toEqual({ mariadb: 'exited', moodle: 'exited' });
    expect(existsSync(join(dirs.state, 'state.json'))).toBe(true);
    expect((await listSnapshots(backend)).find((s) => s.id === killedId)?.status).toBe('incomplete');

    const committed = await until(
      'a scheduled snapshot after the kill',
      async () =>
        logLines(serve.log()).find((l) => l.step === 'commit' && Date.parse(String(l.time)) > killedAt),
      90_000,
    );
    const lines = logLines(serve.log()).filter((l) => Date.parse(String(l.time)) > killedAt);
    const recover = lines.find((l) => l.step === 'recover' && l.runId === killedId);
    expect(recover, serve.log().slice(-3000)).toBeDefined();
    // The same process all along; stopped now so that no scheduled run has the stack down while we look.
    expect(serve.child.exitCode).toBeNull();
    expect(await serve.stop(), serve.log().slice(-3000)).toBe(0);
    expect(await stack.states()).toEqual({ mariadb: 'running', moodle: 'running' });
    expect(existsSync(join(dirs.state, 'state.json'))).toBe(false);
    const snaps = await listSnapshots(backend);
    expect(
      snaps.find((s) => s.id === killedId),
      'the killed run is still listed',
    ).toBeUndefined();
    expect(snaps.find((s) => s.id === committed.snapshot)?.status).toBe('ok');
  });
});

import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listSnapshots, type SnapshotEntry } from '../../src/archive/catalog.js';
import { LocalBackend } from '../../src/storage/local.js';
import { logLines, runCli } from '../harness/cli.js';
import { cliEnv, type TempDirs, tempDirs } from '../harness/config.js';
import { lifecycle, projectEvents } from '../harness/events.js';
import { recreateWithLabels } from '../harness/recreate.js';
import { type ServeProcess, startServeReady, until } from '../harness/serve.js';
import { createMoodleStack, type MoodleStack } from '../harness/stack.js';

/**
 * Labels change what a running `serve` does, without a restart: Compose recreates a container to change
 * its labels, the sidecar sees that in Docker's event stream and plans its jobs again.
 */

// Never fires during the test: only the labels schedule anything here.
const YEARLY = '0 0 1 1 *';
const EVERY_3S = '*/3 * * * * *';

describe('labels on a running stack, picked up by a running serve', () => {
  let stack: MoodleStack;
  let dirs: TempDirs;
  let serve: ServeProcess;
  let env: NodeJS.ProcessEnv;
  let backend: LocalBackend;
  // Every planning line (why jobs came and went), then the tail of everything.
  const diag = () => {
    const log = serve?.log() ?? '';
    const planning = log.split('\n').filter((l) => /"step":"(schedule|labels|watch)"/.test(l));
    return `\n--- serve planning ---\n${planning.join('\n')}\n--- serve log (tail) ---\n${log.slice(-4000)}`;
  };

  const labelled = async (after: number): Promise<SnapshotEntry | undefined> =>
    (await listSnapshots(backend)).find(
      (e) =>
        e.status === 'ok' && e.manifest?.job === 'label-moodle' && Date.parse(e.manifest.createdAt) > after,
    );

  beforeAll(async () => {
    [stack, dirs] = await Promise.all([
      createMoodleStack({ seed: { files: 10, blobKb: 4, bigMb: 1, users: 100, logs: 200 } }),
      tempDirs('labels'),
    ]);
    backend = new LocalBackend(dirs.archive);
    env = cliEnv(stack.project, dirs, { BACKUP_CRON_EXPRESSION: YEARLY, BACKUP_KEEP_LAST: '20' });
    serve = await startServeReady(env);
  });

  afterAll(async () => {
    await serve?.stop(10_000);
    await stack?.remove();
    await dirs?.remove();
  });

  it('a schedule label added to a recreated container starts backups of what it mounts', {
    timeout: 180_000,
  }, async () => {
    const pid = serve.child.pid;
    await recreateWithLabels(stack.containers.moodle, { 'moodle-backup.schedule': EVERY_3S });
    // Event times have one-second resolution: only runs that start a second later are looked at.
    const t0 = Date.now() + 1_000;
    try {
      await until(
        'jobs re-planned',
        async () => (serve.log().includes('jobs re-planned after') ? true : undefined),
        30_000,
      );
      const snap = await until('a snapshot of job label-moodle', () => labelled(t0), 90_000, 1_000);
      // Exactly what moodle mounts; the database is left to the default (yearly) schedule.
      expect(snap.manifest?.volumes.map((v) => v.name)).toEqual(['moodle_data', 'moodledata_data']);
      expect(snap.manifest?.kind).toBe('scheduled');
      const created = Date.parse(snap.manifest?.createdAt ?? '');
      const done = Date.parse(snap.manifest?.completedAt ?? '');
      const during = lifecycle(await projectEvents(stack.project, created, done));
      expect(during, 'Docker events during the labelled run').toContain('stop moodle');
      expect(during.filter((e) => e.endsWith(' mariadb'))).toEqual([]);
    } catch (err) {
      (err as Error).message += diag();
      throw err;
    }
    // The same process all along.
    expect(serve.child.pid).toBe(pid);
    expect(serve.child.exitCode).toBeNull();
    // Runs every 3 s stop moodle for a moment; between them the stack is up.
    await until(
      'the stack running between two runs',
      async () => {
        const s = await stack.states();
        return s.mariadb === 'running' && s.moodle === 'running' ? true : undefined;
      },
      20_000,
      200,
    );
  });

  it('a mode label added next changes how the next run quiesces the container', {
    timeout: 120_000,
  }, async () => {
    await recreateWithLabels(stack.containers.moodle, { 'moodle-backup.mode': 'pause' });
    const t0 = Date.now() + 1_000;
    try {
      const snap = await until('a labelled snapshot after the change', () => labelled(t0), 60_000, 1_000);
      const moodle = snap.manifest?.stack.services.find((s) => s.service === 'moodle');
      expect(moodle?.action).toBe('pause');
      const created = Date.parse(snap.manifest?.createdAt ?? '');
      const during = lifecycle(
        await projectEvents(stack.project, created, Date.parse(snap.manifest?.completedAt ?? '')),
      );
      expect(during).toContain('pause moodle');
      expect(during).not.toContain('stop moodle');
    } catch (err) {
      (err as Error).message += diag();
      throw err;
    }
  });

  it('a bad label value is refused naming container, label and value; nothing is stopped', {
    timeout: 120_000,
  }, async () => {
    await recreateWithLabels(stack.containers.moodle, {
      'moodle-backup.schedule': 'every 3 seconds',
      'moodle-backup.mode': null,
    });
    const expected = `container ${stack.containers.moodle}: label moodle-backup.schedule="every 3 seconds"`;
    const reported = await until(
      'serve to report the label',
      async () => logLines(serve.log()).find((l) => String(l.msg).includes(expected)),
      30_000,
    );
    expect(reported).toMatchObject({ code: 'LABEL_INVALID', level: 50 });
    // The labelled job is gone: the default job takes the volumes back, on its yearly schedule.
    await until(
      'the label job to be removed',
      async () => (serve.log().includes('removed label-moodle') ? true : undefined),
      30_000,
    );

    // Event times have one-second resolution: leave the second of the recreation behind.
    await sleep(1_100);
    // A labelled run that was busy when the container was recreated may still hold the lock for a moment.
    let t0 = Date.now();
    const r = await until(
      'a backup not refused by the run lock',
      async () => {
        t0 = Date.now();
        const out = await runCli(['backup'], env);
        return out.code === 3 ? undefined : out;
      },
      60_000,
    );
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain(`error [LABEL_INVALID]: invalid label: ${expected}: is not a cron expression`);
    expect(r.stderr).toContain('nothing was stopped');
    expect(lifecycle(await projectEvents(stack.project, t0))).toEqual([]);
    expect(await stack.states()).toEqual({ mariadb: 'running', moodle: 'running' });
    expect(serve.child.exitCode).toBeNull();
    expect(await serve.stop(), diag()).toBe(0);

    // `prune` (without serve) finds the label job's snapshots and plans them under that job, apart from default's.
    const labelled = (await listSnapshots(backend)).filter((e) => e.manifest?.job === 'label-moodle');
    const dry = await runCli(['prune', '--dry-run', '--json'], env);
    expect(dry.code, dry.stderr).toBe(0);
    const jobs = (JSON.parse(dry.stdout) as { jobs: { job: string; decisions: { id: string }[] }[] }).jobs;
    expect(jobs.map((j) => j.job)).toEqual(['default', 'label-moodle']);
    expect(jobs[1]?.decisions.map((d) => d.id).sort()).toEqual(labelled.map((e) => e.id).sort());
    expect(labelled.length).toBeGreaterThanOrEqual(2);
  });
});

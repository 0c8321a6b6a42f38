import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBackup } from '../../src/backup/run.js';
import { BackupMetrics } from '../../src/observe/metrics.js';
import { Notifier } from '../../src/observe/notify.js';
import { createBackend } from '../../src/storage/index.js';
import { composeLabels, createProjectResources } from '../harness/compose.js';
import { type TempDirs, tempDirs, testConfig } from '../harness/config.js';
import { docker, IMAGES, sweepLeftovers, uniqueName } from '../harness/docker.js';
import { capturingLogger } from '../harness/moodle.js';
import { VOLUME_NAMES } from '../harness/stack.js';

/**
 * A project where no Moodle can be found, whose one service runs a shell as PID 1 (it ignores SIGTERM) with
 * a 1 s stop_grace_period: the backup still succeeds, and says both things a user must know — at warn level,
 * in the manifest, in /metrics and in the success webhook.
 */
describe('warnings a user must see: no Moodle found, a stop that ran into its timeout', () => {
  let project: string;
  let dirs: TempDirs;
  const app = () => `${project}-app-1`;

  beforeAll(async () => {
    project = uniqueName('warn');
    dirs = await tempDirs('warn');
    const { network, volumes } = await createProjectResources(project, VOLUME_NAMES);
    const c = await docker().createContainer({
      name: app(),
      Image: IMAGES.busybox,
      // A shell entrypoint that never execs: as PID 1 it ignores SIGTERM, so only SIGKILL ends it.
      Cmd: ['sh', '-c', 'while :; do sleep 1; done'],
      Labels: { ...composeLabels(project, 'app'), 'moodle-backup.stop': 'true' },
      HostConfig: { Binds: [`${volumes.moodledata_data}:/data`], NetworkMode: network },
      // What Compose makes of `stop_grace_period: 1s`.
      StopTimeout: 1,
    });
    await c.start();
  });
  afterAll(async () => {
    await sweepLeftovers({ project });
    await dirs?.remove();
  });

  it('backs up, warns naming the container and the fix, and reports the missing protection everywhere', async () => {
    const received: string[] = [];
    const server = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => {
        body += d.toString();
      });
      req.on('end', () => {
        received.push(body);
        res.end('ok');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const config = testConfig(project, dirs, { volumes: ['moodledata_data'] });
      const { log, lines } = capturingLogger();
      const m = await runBackup({ docker: docker(), config, backend: createBackend(config.target), log });
      const warns = lines().filter((l) => l.level === 40);

      const notFound = warns.find((l) => /Moodle not found/.test(String(l.msg)));
      expect(notFound?.msg).toContain(app());
      expect(notFound?.msg).toContain('/var/www/html');
      expect(notFound?.msg).toContain('WITHOUT maintenance mode');
      expect(notFound?.msg).toContain('moodle-backup.moodle-dir=');

      const killed = warns.find((l) => l.step === 'quiesce');
      // Its own stop timeout (1 s), not the global 60 s, and the fixes by name.
      expect(killed).toMatchObject({ container: app(), timeoutSeconds: 1, exitCode: 137 });
      expect(killed?.msg).toMatch(/init: true.*stop_signal.*stop_grace_period/);
      expect((await docker().getContainer(app()).inspect()).State.Running).toBe(true);

      expect(m.site).toEqual({
        moodle: null,
        maintenance: false,
        moodleExcludes: false,
        dataroot: null,
        datarootVolume: null,
        warnings: [notFound?.msg],
      });
      const metrics = new BackupMetrics();
      metrics.recordSuccess(m);
      const text = await metrics.render();
      expect(text).toMatch(/^moodle_backup_last_maintenance_mode 0$/m);
      expect(text).toMatch(/^moodle_backup_last_moodle_excludes 0$/m);

      const { port } = server.address() as AddressInfo;
      const notifier = new Notifier({
        url: `http://127.0.0.1:${port}/hook`,
        events: ['success'],
        project,
        logsCommand: 'docker logs x',
        log,
      });
      expect(await notifier.success(m)).toBe(true);
      const payload = JSON.parse(received[0] ?? '{}') as { message: string; warnings: string[] };
      expect(payload.message).toContain(
        "taken WITHOUT maintenance mode and WITHOUT Moodle's excludes (Moodle not found)",
      );
      expect(payload.warnings).toEqual([notFound?.msg]);
    } finally {
      server.close();
    }
  }, 180_000);
});

import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listSnapshots } from '../../src/archive/catalog.js';
import type { Config } from '../../src/config/types.js';
import { HealthState } from '../../src/observe/health.js';
import { silentLogger } from '../../src/observe/logger.js';
import { Notifier, type NotifyPayload } from '../../src/observe/notify.js';
import { parseSchedule, STALE_GRACE_MS, staleDeadline } from '../../src/schedule/scheduler.js';
import { LocalBackend } from '../../src/storage/local.js';
import { runCli } from '../harness/cli.js';
import { cliEnv, type TempDirs, tempDirs } from '../harness/config.js';
import { freePort } from '../harness/s3-server.js';
import { type ServeProcess, startServe, until } from '../harness/serve.js';
import { createMoodleStack, type MoodleStack } from '../harness/stack.js';

const TOKEN = 'hook-token-4f1c9e';

async function get(port: number, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(5_000) });
  return { status: res.status, body: await res.text() };
}

function metric(text: string, name: string): number | undefined {
  const escaped = name.replace(/[{}"=]/g, (c) => `\\${c}`);
  const m = text.match(new RegExp(`^${escaped} (\\S+)$`, 'm'));
  return m ? Number(m[1]) : undefined;
}

describe('serve: scheduled backups, health, metrics, webhook', () => {
  let stack: MoodleStack;
  let dirs: TempDirs;
  let serve: ServeProcess | undefined;
  let hook: Server;
  const posts: { body: string; payload: NotifyPayload }[] = [];
  let failNextFailure = true;

  beforeAll(async () => {
    // global-setup builds dist; build here too when run without it (or before it learnt to).
    if (!existsSync(fileURLToPath(new URL('../../dist/cli/serve.js', import.meta.url)))) {
      execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json']);
    }
    [stack, dirs] = await Promise.all([
      createMoodleStack({ seed: { files: 10, blobKb: 4, bigMb: 1, users: 100, logs: 200 } }),
      tempDirs('serve'),
    ]);
    hook = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => {
        body += d.toString();
      });
      req.on('end', () => {
        const payload = JSON.parse(body) as NotifyPayload;
        posts.push({ body, payload });
        // The first failure is refused once: the sidecar must retry it.
        if (payload.event === 'failure' && failNextFailure) {
          failNextFailure = false;
          res.writeHead(503).end();
        } else res.writeHead(204).end();
      });
    });
    hook.listen(0, '127.0.0.1');
    await once(hook, 'listening');
  });

  afterAll(async () => {
    await serve?.stop(5_000);
    hook?.closeAllConnections();
    hook?.close();
    await stack?.remove();
    await dirs?.remove();
  });

  it('backs up on schedule, reports health and metrics, notifies a failure, stops cleanly on SIGTERM', {
    timeout: 420_000,
  }, async () => {
    const started = Date.now();
    const port = await freePort();
    const hookPort = (hook.address() as { port: number }).port;
    // Under a directory that is later replaced by a regular file: the target becomes unwritable.
    const parent = join(dirs.root, 'target');
    const archive = join(parent, 'archive');
    const env = cliEnv(stack.project, dirs, {
      BACKUP_ARCHIVE: archive,
      BACKUP_CRON_EXPRESSION: '*/5 * * * * *',
      BACKUP_HEALTH_PORT: String(port),
      BACKUP_HEALTH_HOST: '127.0.0.1',
      BACKUP_WEBHOOK_URL: `http://127.0.0.1:${hookPort}/hook/${TOKEN}`,
      BACKUP_NOTIFY_ON: 'success',
      BACKUP_KEEP_LAST: '3',
    });
    const running = startServe(env);
    serve = running;
    const stderr = () => running.log();
    const diag = () => `\n--- serve stderr (tail) ---\n${stderr().slice(-4000)}`;

    try {
      // 1. A scheduled snapshot appears at the target.
      const backend = new LocalBackend(archive);
      const snap = await until(
        'a scheduled snapshot',
        async () =>
          (await listSnapshots(backend)).find((e) => e.status === 'ok' && e.manifest?.kind === 'scheduled'),
        150_000,
      );

      // 2. Healthy, with the success recorded.
      const health = await until(
        '/healthz 200 with a last success',
        async () => {
          const r = await get(port, '/healthz');
          const body = JSON.parse(r.body) as { status: string; lastSuccess: string | null; nextRun: string };
          return r.status === 200 && body.lastSuccess ? body : undefined;
        },
        30_000,
      );
      expect(health.status).toBe('ok');
      expect(Date.parse(health.nextRun)).toBeGreaterThan(started);

      // 3. Metrics.
      const metrics = (await get(port, '/metrics')).body;
      const last = metric(metrics, 'moodle_backup_last_success_timestamp_seconds');
      expect(last, metrics).toBeGreaterThanOrEqual(Math.floor(started / 1000));
      expect(last).toBeLessThanOrEqual(Date.now() / 1000 + 1);
      expect(metric(metrics, 'moodle_backup_runs_total{result="success"}')).toBeGreaterThanOrEqual(1);
      expect(metric(metrics, 'moodle_backup_volume_stored_bytes{volume="mariadb_data"}')).toBeGreaterThan(0);
      expect(metric(metrics, 'moodle_backup_snapshots{status="ok"}')).toBeGreaterThanOrEqual(1);
      expect((await get(port, '/nope')).status).toBe(404);

      // The success was posted too (BACKUP_NOTIFY_ON=success).
      const success = await until(
        'a success notification',
        async () => posts.find((p) => p.payload.event === 'success')?.payload,
        30_000,
      );
      expect(success).toMatchObject({ event: 'success', project: stack.project });
      expect(success.snapshot).toMatch(/^\d{8}T\d{6}Z-/);
      expect(snap.id).toMatch(/^\d{8}T\d{6}Z-/);

      // 4. The target becomes unwritable: the next run fails and says so.
      await rename(parent, `${parent}.moved`);
      await writeFile(parent, 'a regular file where the archive directory was\n');
      const failure = await until(
        'a failure notification',
        async () => posts.find((p) => p.payload.event === 'failure'),
        150_000,
      );
      expect(failure.payload).toMatchObject({
        event: 'failure',
        project: stack.project,
        error: { code: 'STORAGE_FAILED' },
      });
      expect(failure.payload.message).toContain(`backup of project ${stack.project} failed:`);
      // Written directly (a local target is not spooled): the cause, not the stream's "Premature close".
      expect(failure.payload.message).toMatch(/ENOTDIR|not a directory/);
      expect(failure.payload.message).not.toMatch(/premature close/i);
      expect(failure.payload.message).toMatch(/ — see `.+`$/);
      expect(failure.payload.hint.length).toBeGreaterThan(0);
      expect(Date.parse(failure.payload.time)).toBeGreaterThan(started);
      expect(failure.payload.host.length).toBeGreaterThan(0);
      // Refused once with 503, so delivered again: the same event, byte for byte.
      await until(
        'the retried failure notification',
        async () => (posts.filter((p) => p.body === failure.body).length >= 2 ? true : undefined),
        30_000,
      );

      const unhealthy = await get(port, '/healthz');
      expect(unhealthy.status).toBe(503);
      expect(JSON.parse(unhealthy.body)).toMatchObject({ status: 'failing' });
      expect(JSON.parse(unhealthy.body).reason).toContain('STORAGE_FAILED');
      expect(
        metric((await get(port, '/metrics')).body, 'moodle_backup_failures_total'),
      ).toBeGreaterThanOrEqual(1);

      // 5. SIGTERM while a run has the stack stopped: the run aborts, the stack is resumed, exit 0.
      const plans = () => stderr().match(/"step":"plan"/g)?.length ?? 0;
      const seen = plans();
      await until('the next run to start', async () => (plans() > seen ? true : undefined), 30_000, 20);
      // Exit code 0 (null: killed, still running 90 s after SIGTERM).
      expect(await running.stop(90_000), diag()).toBe(0);
    } catch (err) {
      (err as Error).message += diag();
      throw err;
    }
    expect(stderr()).toContain('scheduled backup interrupted by shutdown; the stack was resumed');
    expect(await stack.states()).toEqual({ mariadb: 'running', moodle: 'running' });
    // The webhook URL is a secret: it never reaches the log.
    expect(stderr()).not.toContain(TOKEN);
  });
});

describe('serve without a schedule, and with a bad one', () => {
  let dirs: TempDirs;
  beforeAll(async () => {
    dirs = await tempDirs('serve-idle');
  });
  afterAll(async () => {
    await dirs?.remove();
  });

  it('keeps /healthz up (healthy: only failures count) until SIGTERM', async () => {
    const port = await freePort();
    const env = cliEnv('mbst-idle-none', dirs, {
      BACKUP_HEALTH_PORT: String(port),
      BACKUP_HEALTH_HOST: '127.0.0.1',
    });
    const serve = startServe(env);
    try {
      const r = await until('/healthz', () => get(port, '/healthz'), 30_000);
      expect(r.status).toBe(200);
      expect(JSON.parse(r.body)).toMatchObject({
        status: 'ok',
        lastSuccess: null,
        nextRun: null,
        staleAt: null,
      });
      expect(serve.log()).toContain('nothing is scheduled');
      expect(await serve.stop(30_000), serve.log()).toBe(0);
    } finally {
      await serve.stop(5_000);
    }
  });

  it('BACKUP_HEALTH_STALE_AFTER: turns 503 and posts one stale notification per stale period', async () => {
    const port = await freePort();
    const stale: NotifyPayload[] = [];
    const hook = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => {
        body += d.toString();
      });
      req.on('end', () => {
        stale.push(JSON.parse(body) as NotifyPayload);
        res.writeHead(204).end();
      });
    });
    hook.listen(0, '127.0.0.1');
    await once(hook, 'listening');
    const env = cliEnv('mbst-idle-stale', dirs, {
      BACKUP_HEALTH_PORT: String(port),
      BACKUP_HEALTH_HOST: '127.0.0.1',
      BACKUP_HEALTH_STALE_AFTER: '2s',
      BACKUP_WEBHOOK_URL: `http://127.0.0.1:${(hook.address() as { port: number }).port}/h`,
      BACKUP_NOTIFY_ON: 'stale',
    });
    const serve = startServe(env);
    try {
      const r = await until(
        '/healthz 503',
        async () => {
          const h = await get(port, '/healthz');
          return h.status === 503 ? h : undefined;
        },
        30_000,
      );
      expect(JSON.parse(r.body)).toMatchObject({ status: 'stale', lastSuccess: null });
      expect(JSON.parse(r.body).reason).toContain('no successful backup since the sidecar started');
      await until('a stale notification', async () => (stale.length > 0 ? true : undefined), 30_000);
      await sleep(3_000); // several more checks: still one notification
      expect(stale).toHaveLength(1);
      expect(stale[0]).toMatchObject({ event: 'stale', project: 'mbst-idle-stale' });
      expect(stale[0]?.message).toContain('backups of project mbst-idle-stale are overdue');
      expect(await serve.stop(30_000)).toBe(0);
    } finally {
      await serve.stop(5_000);
      hook.closeAllConnections();
      hook.close();
    }
  });

  it('refuses an invalid cron expression at start (exit 2)', async () => {
    const r = await runCli(
      ['serve'],
      cliEnv('mbst-idle-bad', dirs, { BACKUP_CRON_EXPRESSION: '0 25 * * *' }),
      {
        timeoutMs: 30_000,
      },
    );
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('error [CONFIG_INVALID]: BACKUP_CRON_EXPRESSION "0 25 * * *"');
  });
});

describe('staleness and webhook delivery (no Docker)', () => {
  const config = (over: Partial<Config> = {}) => ({ ...over }) as Config;

  it('a daily schedule turns stale two missed runs plus grace after the last success', () => {
    const cron = parseSchedule('0 2 * * *');
    const deadline = staleDeadline(config(), cron);
    const success = new Date(2026, 10, 20, 2, 5); // local time, like the cron
    expect(deadline?.(success)?.getTime()).toBe(new Date(2026, 10, 22, 2, 0).getTime() + STALE_GRACE_MS);
    let now = new Date(2026, 10, 22, 2, 9);
    const health = new HealthState({ staleDeadline: deadline, now: () => now });
    health.recordSuccess(success, 'snap-1');
    expect(health.report().status).toBe('ok');
    now = new Date(2026, 10, 22, 2, 11);
    expect(health.report()).toMatchObject({ status: 'stale', lastSnapshot: 'snap-1' });
    // An explicit threshold wins over the schedule.
    expect(staleDeadline(config({ healthStaleAfterSeconds: 60 }), cron)?.(success)?.getTime()).toBe(
      success.getTime() + 60_000,
    );
    // No schedule and no threshold: only failures count.
    expect(staleDeadline(config())).toBeUndefined();
  });

  it('a failure newer than the last success is unhealthy until the next success', () => {
    let now = new Date('2026-11-20T10:00:00Z');
    const health = new HealthState({ now: () => now });
    health.recordSuccess(new Date('2026-11-20T09:00:00Z'), 'a');
    health.recordFailure(new Error('disk full'));
    expect(health.report()).toMatchObject({ status: 'failing', lastFailure: { code: 'UNEXPECTED' } });
    now = new Date('2026-11-20T11:00:00Z');
    health.recordSuccess(new Date('2026-11-20T10:30:00Z'), 'b');
    expect(health.report()).toMatchObject({ status: 'ok', lastSnapshot: 'b' });
  });

  it('gives up within its time bound when the receiver never answers, without throwing', async () => {
    const silent = createServer(() => undefined); // accepts, never responds
    silent.listen(0, '127.0.0.1');
    await once(silent, 'listening');
    const port = (silent.address() as { port: number }).port;
    try {
      const notifier = new Notifier({
        url: `http://127.0.0.1:${port}/`,
        project: 'p',
        logsCommand: 'docker logs x',
        log: silentLogger(),
        attemptTimeoutMs: 300,
        baseDelayMs: 100,
        totalTimeoutMs: 1_500,
      });
      const t0 = Date.now();
      expect(await notifier.failure(new Error('boom'))).toBe(false);
      expect(Date.now() - t0).toBeLessThan(2_500);
      // Success and stale are opt-in.
      expect(notifier.enabled('success')).toBe(false);
      expect(await notifier.stale('overdue')).toBe(false);
    } finally {
      silent.closeAllConnections();
      silent.close();
    }
  });
});

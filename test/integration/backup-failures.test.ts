import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, writeFile } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { listSnapshots } from '../../src/archive/catalog.js';
import type { Manifest } from '../../src/archive/manifest.js';
import { createBackend } from '../../src/storage/index.js';
import { extractWithPlainTar } from '../harness/archive.js';
import { logLines, runCli } from '../harness/cli.js';
import { cliEnv, type TempDirs, tempDirs } from '../harness/config.js';
import { lifecycle, projectEvents } from '../harness/events.js';
import { fingerprintVolume } from '../harness/fingerprint.js';
import { createTestBucket, s3Env } from '../harness/s3.js';
import { freePort } from '../harness/s3-server.js';
import { createMoodleStack, type MoodleStack } from '../harness/stack.js';

const SMALL = { files: 10, blobKb: 4, bigMb: 2, users: 100, logs: 200 };
const RUNNING = { mariadb: 'running', moodle: 'running' };
/** Appended to by the failure stack's pre hook: it shows whether a run got as far as running hooks. */
const PRE_LOG = '/tmp/pre-hook-runs';

/** Container lifecycle events (stop, pause, …) of the project from `sinceMs` on (Docker's ns clock). */
async function lifecycleSince(project: string, sinceMs: number): Promise<string[]> {
  const events = await projectEvents(project, sinceMs);
  return lifecycle(events.filter((e) => e.time >= sinceMs * 1e6));
}

async function preHookRuns(stack: MoodleStack): Promise<number> {
  const r = await stack.exec('moodle', ['sh', '-c', `cat ${PRE_LOG} 2>/dev/null || true`]);
  return r.stdout.split('\n').filter(Boolean).length;
}

/** The run switched maintenance mode on and then off again: both in its log, and no flag left in the dataroot. */
async function expectMaintenanceOnThenOff(stack: MoodleStack, stderr: string): Promise<void> {
  expect(
    logLines(stderr)
      .filter((l) => l.step === 'maintenance')
      .map((l) => l.msg),
  ).toEqual(['maintenance mode on', 'maintenance mode off']);
  expect(
    (await stack.exec('moodle', ['test', '-e', '/bitnami/moodledata/climaintenance.html'])).exitCode,
  ).toBe(1);
}

/** A TCP forwarder on `port` to the test S3 server: the "unreachable" endpoint, come back. */
async function forwardTo(port: number, to: number): Promise<{ close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const srv: Server = createServer((client) => {
    const upstream = connect(to, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(port, '127.0.0.1', () => resolve());
  });
  return {
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        srv.close(() => resolve());
      }),
  };
}

describe('failed backups leave the stack running and the target clean', () => {
  let stack: MoodleStack;
  let dirs: TempDirs;
  let bucket: string;

  beforeAll(async () => {
    [stack, dirs, bucket] = await Promise.all([
      createMoodleStack({
        seed: SMALL,
        labels: { moodle: { 'moodle-backup.pre': `echo run >> ${PRE_LOG}` } },
      }),
      tempDirs('fail'),
      createTestBucket('unreach'),
    ]);
  });
  afterAll(async () => {
    await stack?.remove();
    await dirs?.remove();
  });

  it.each<{ spool: string; env: Record<string, string> }>([
    { spool: 'never', env: { BACKUP_SPOOL: 'never' } },
    { spool: 'auto (default: spooled, uploaded after resume)', env: {} },
  ])(
    'S3 unreachable, spool $spool: STORAGE error naming the bucket, stack running, nothing stored',
    async ({ env: extra, spool }) => {
      const port = await freePort();
      // An S3 target at 127.0.0.1:<port>, where nothing listens.
      // Whole-volume archives, spooled or streamed, each read: an incremental run, or one that may reuse an
      // unchanged volume's archive, fails earlier still, listing the target before anything stops.
      const env = s3Env(stack, dirs, bucket, `127.0.0.1:${port}`, {
        AWS_S3_PATH: `p${port}`,
        BACKUP_INCREMENTAL: 'off',
        BACKUP_REUSE_ARCHIVES: 'off',
        ...extra,
      });
      const since = Date.now();
      const r = await runCli(['backup'], env, { timeoutMs: 110_000 });
      expect(r.code, r.stderr).toBe(6);
      const errorLine = r.stderr.split('\n').find((l) => l.startsWith('error ['));
      expect(errorLine).toMatch(/^error \[STORAGE_FAILED\]: /);
      expect(errorLine).toContain(`s3://${bucket}/`);

      // The stack was stopped for the read and is running again.
      const events = await lifecycleSince(stack.project, since);
      expect(events.filter((e) => e.startsWith('stop'))).toEqual(['stop moodle', 'stop mariadb']);
      expect(events.filter((e) => e.startsWith('start'))).toEqual(['start mariadb', 'start moodle']);
      expect(await stack.states()).toEqual(RUNNING);
      expect(existsSync(join(dirs.state, 'state.json'))).toBe(false);
      expect(existsSync(join(dirs.state, 'run.lock'))).toBe(false);
      // Maintenance mode was on for the run and is off after the failure.
      await expectMaintenanceOnThenOff(stack, r.stderr);
      // No spooled archive is left on the sidecar's disk.
      expect(existsSync(dirs.spool) ? await readdir(dirs.spool) : []).toEqual([]);

      const logs = logLines(r.stderr);
      const resumedAt = logs.findIndex((l) => l.step === 'resumed');
      expect(resumedAt, 'no "resumed" log line').toBeGreaterThanOrEqual(0);
      if (spool.startsWith('auto')) {
        // Downtime ended before the upload was even tried: every volume was read into the spool first.
        expect(logs.slice(0, resumedAt).filter((l) => l.step === 'read')).toHaveLength(3);
        expect(r.stderr.indexOf('"step":"resumed"')).toBeLessThan(r.stderr.indexOf('error [STORAGE_FAILED]'));
        expect(errorLine).toMatch(/S3 put .*\/\d{8}T\d{6}Z-[0-9a-f]+\/mariadb_data\.tar\.zst failed/);
      } else {
        // Streaming straight to S3: the first volume's upload fails while the stack is down.
        expect(logs.slice(0, resumedAt).filter((l) => l.step === 'read')).toHaveLength(0);
      }

      // The same endpoint, reachable again: no snapshot and no object arrived there.
      const s3 = new URL(inject('s3').endpoint);
      const proxy = await forwardTo(port, Number(s3.port));
      try {
        const list = await runCli(['snapshots', '--json'], env, { timeoutMs: 60_000 });
        expect(list.code, list.stderr).toBe(0);
        expect(JSON.parse(list.stdout)).toEqual([]);
      } finally {
        await proxy.close();
      }
    },
  );

  it('a local target that cannot be written, written directly (not spooled): the error names the cause, not the stream', async () => {
    // The archive directory's parent is a regular file: every write under it fails with ENOTDIR.
    const parent = join(dirs.root, 'not-a-dir');
    await writeFile(parent, 'a regular file where a directory should be\n');
    const archive = join(parent, 'archive');
    const env = cliEnv(stack.project, dirs, { BACKUP_ARCHIVE: archive, BACKUP_SPOOL: 'never' });
    const r = await runCli(['backup'], env, { timeoutMs: 110_000 });
    expect(r.code, r.stderr).toBe(6);
    const errorLine = r.stderr.split('\n').find((l) => l.startsWith('error ['));
    expect(errorLine).toMatch(/^error \[STORAGE_FAILED\]: /);
    expect(errorLine).toMatch(/ENOTDIR|not a directory/);
    expect(errorLine).toContain(archive);
    expect(r.stderr).not.toMatch(/premature close/i);
    expect(await stack.states()).toEqual(RUNNING);
    expect(existsSync(join(dirs.state, 'state.json'))).toBe(false);
  });

  it('a volume that does not exist: exit 4 naming it, before anything is stopped or any hook runs', async () => {
    const hooksBefore = await preHookRuns(stack);
    const since = Date.now();
    const r = await runCli(
      ['backup'],
      cliEnv(stack.project, dirs, { BACKUP_VOLUMES: 'moodledata_data,nonexistent_data' }),
      { timeoutMs: 60_000 },
    );
    expect(r.code, r.stderr).toBe(4);
    expect(r.stderr).toMatch(/error \[VOLUME_NOT_FOUND\]: .*nonexistent_data/);
    expect(r.stderr).toContain('BACKUP_VOLUMES');
    expect(await lifecycleSince(stack.project, since)).toEqual([]);
    expect(await preHookRuns(stack)).toBe(hooksBefore);
    expect(await stack.states()).toEqual(RUNNING);
    expect(await listSnapshots(createBackend({ type: 'local', path: dirs.archive }))).toEqual([]);
    expect(existsSync(join(dirs.state, 'state.json'))).toBe(false);
  });

  it.each([
    { variable: 'BACKUP_COMPRESSION', value: 'rar' },
    { variable: 'BACKUP_MODE', value: 'sleep' },
    { variable: 'BACKUP_FOO', value: 'bar' },
  ])(
    'invalid configuration $variable=$value: exit 2 naming the variable, nothing touched',
    async ({ variable, value }) => {
      const hooksBefore = await preHookRuns(stack);
      const since = Date.now();
      const r = await runCli(['backup'], cliEnv(stack.project, dirs, { [variable]: value }), {
        timeoutMs: 60_000,
      });
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(new RegExp(`error \\[CONFIG_INVALID\\]: .*${variable}`));
      expect(await lifecycleSince(stack.project, since)).toEqual([]);
      expect(await preHookRuns(stack)).toBe(hooksBefore);
      expect(await stack.states()).toEqual(RUNNING);
    },
  );

  it('several invalid settings are all reported in one run', async () => {
    const r = await runCli(
      ['backup'],
      cliEnv(stack.project, dirs, { BACKUP_COMPRESSION: 'rar', BACKUP_MODE: 'sleep', BACKUP_FOO: 'bar' }),
      { timeoutMs: 60_000 },
    );
    expect(r.code, r.stderr).toBe(2);
    for (const v of ['BACKUP_COMPRESSION', 'BACKUP_MODE', 'BACKUP_FOO']) expect(r.stderr).toContain(v);
    expect(r.stderr).toContain('rar');
  });
});

describe('pre/post hooks from labels', () => {
  const MARKER = '/bitnami/moodledata/pre-hook-marker.txt';
  const MARKER_TEXT = 'written by the archive-pre hook\n';
  let failing: MoodleStack;
  let offen: MoodleStack;
  let dirs: TempDirs;

  beforeAll(async () => {
    [failing, offen, dirs] = await Promise.all([
      createMoodleStack({
        seed: SMALL,
        labels: {
          moodle: {
            'moodle-backup.pre': "sh -c 'echo boom >&2; exit 3'",
            'moodle-backup.post': 'touch /tmp/post-hook-ran',
          },
        },
      }),
      createMoodleStack({
        seed: SMALL,
        labels: {
          moodle: {
            'docker-volume-backup.archive-pre': `printf '${MARKER_TEXT.replace('\n', '\\n')}' > ${MARKER}`,
            'docker-volume-backup.archive-post': `rm -f ${MARKER}`,
            // Replaces the Moodle defaults for moodledata: only lang/'s contents are left out.
            'moodle-backup.exclude': '/bitnami/moodledata/lang/',
          },
        },
      }),
      tempDirs('hooks'),
    ]);
  });
  afterAll(async () => {
    await Promise.all([failing?.remove(), offen?.remove()]);
    await dirs?.remove();
  });

  it('a failing pre hook: exit 5 (HOOK_FAILED), nothing stopped, no snapshot, maintenance off again, the post hook still ran', async () => {
    const archive = join(dirs.root, 'failing');
    const since = Date.now();
    const r = await runCli(['backup'], cliEnv(failing.project, dirs, { BACKUP_ARCHIVE: archive }), {
      timeoutMs: 60_000,
    });
    expect(r.code, r.stderr).toBe(5);
    expect(r.stderr).toMatch(/error \[HOOK_FAILED\]: pre hook in .*moodle.* exited 3: boom/);
    expect(await lifecycleSince(failing.project, since)).toEqual([]);
    expect(await failing.states()).toEqual(RUNNING);
    expect(await listSnapshots(createBackend({ type: 'local', path: archive }))).toEqual([]);
    expect(existsSync(join(dirs.state, 'state.json'))).toBe(false);
    expect((await failing.exec('moodle', ['test', '-f', '/tmp/post-hook-ran'])).exitCode).toBe(0);
    const hooks = logLines(r.stderr).filter((l) => l.step === 'hook');
    // The hook's output is in its log line.
    expect(String(hooks[0]?.output)).toContain('boom');
    expect(hooks.map((h) => [h.phase, h.exitCode])).toEqual([
      ['pre', 3],
      ['post', 0],
    ]);
    expect(logLines(r.stderr).some((l) => l.step === 'quiesce')).toBe(false);
    // The hook ran with the site in maintenance mode; the abort turned it off again.
    await expectMaintenanceOnThenOff(failing, r.stderr);
  });

  it("offen's archive-pre/-post labels: the pre hook's file is in the archive, the post hook removed it; the exclude label applies", async () => {
    const archive = join(dirs.root, 'offen');
    const r = await runCli(['backup', '--json'], cliEnv(offen.project, dirs, { BACKUP_ARCHIVE: archive }), {
      timeoutMs: 110_000,
    });
    expect(r.code, r.stderr).toBe(0);
    const manifest = JSON.parse(r.stdout) as Manifest;
    expect(await offen.states()).toEqual(RUNNING);

    // Order: pre hook before anything stops, post hook after the stack is back.
    const steps = logLines(r.stderr).map((l) => (l.step === 'hook' ? `hook ${String(l.phase)}` : l.step));
    const at = (s: string) => steps.indexOf(s);
    expect(at('hook pre')).toBeGreaterThanOrEqual(0);
    expect(at('hook pre')).toBeLessThan(at('quiesce'));
    expect(at('resumed')).toBeLessThan(at('hook post'));

    const v = manifest.volumes.find((x) => x.name === 'moodledata_data');
    if (!v) throw new Error('no moodledata_data in the manifest');
    const extracted = await extractWithPlainTar(join(archive, manifest.id, v.file), 'zstd');
    const entry = (await fingerprintVolume(extracted)).entries.find((e) => e.path === 'pre-hook-marker.txt');
    expect(entry?.sha256).toBe(createHash('sha256').update(MARKER_TEXT).digest('hex'));
    // The exclude label: lang/ is there and empty, the caches the defaults would drop are kept.
    expect(v.excluded).toEqual(['lang/']);
    const paths = (await fingerprintVolume(extracted)).entries.map((e) => e.path);
    expect(paths).toContain('lang');
    expect(paths.filter((p) => p.startsWith('lang/'))).toEqual([]);
    expect(paths).toContain('cache/cachestore_file/core.php');
    expect(paths).toContain('moodle-cron.log');
    expect((await offen.exec('moodle', ['test', '-e', MARKER])).exitCode).toBe(1);
  });
});

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { composeLabels } from '../harness/compose.js';
import { docker, type ExecResult, execIn, TEST_LABEL } from '../harness/docker.js';
import {
  type DbFingerprint,
  fingerprintDb,
  fingerprintVolume,
  type VolumeFingerprint,
} from '../harness/fingerprint.js';
import { diffMinusExcludes } from '../harness/moodle.js';
import { captureContainer } from '../harness/recreate.js';
import { until } from '../harness/serve.js';
import {
  buildSidecarImage,
  containerLogs,
  dockerSocket,
  SIDECAR_IMAGE,
  startS3Service,
} from '../harness/sidecar-image.js';
import { createMoodleStack, DB, type MoodleStack } from '../harness/stack.js';

/**
 * The image as users run it: built from the Dockerfile (scripts/build-image.sh, cached), started as the
 * `backup` service of a compose-labelled Moodle project with the Docker socket, an S3 server on the project
 * network, a secret read from a *_FILE, and its health port published on 127.0.0.1 only.
 */

const BUCKET = 'backups';
const FILE_VOLUMES = ['moodle_data', 'moodledata_data'] as const;

interface SnapshotJson {
  id: string;
  status: string;
  kind: string | null;
}

interface Fingerprints {
  files: Record<string, VolumeFingerprint>;
  db: DbFingerprint;
}

async function fingerprints(stack: MoodleStack): Promise<Fingerprints> {
  const files: Record<string, VolumeFingerprint> = {};
  for (const v of FILE_VOLUMES) files[v] = await fingerprintVolume(stack.volumes[v]);
  return { files, db: await fingerprintDb(stack.sql, DB.name) };
}

function expectSame(a: Fingerprints, b: Fingerprints): void {
  for (const v of FILE_VOLUMES)
    expect(diffMinusExcludes(a.files[v] as VolumeFingerprint, b.files[v] as VolumeFingerprint), v).toEqual(
      [],
    );
  expect(b.db).toEqual(a.db);
}

/** Unlabelled 64-hex volumes nobody uses: what anonymous volumes of removed containers leave behind. */
async function danglingAnonymousVolumes(): Promise<Set<string>> {
  const { Volumes } = await docker().listVolumes({ filters: { dangling: ['true'] } });
  return new Set(
    (Volumes ?? [])
      .filter((v) => /^[0-9a-f]{64}$/.test(v.Name) && Object.keys(v.Labels ?? {}).length === 0)
      .map((v) => v.Name),
  );
}

/** A seconds-level schedule: the sidecar backs up all through the test, as it would in production. */
const SCHEDULE = '*/15 * * * * *';

/** Whether the sidecar holds its run lock (read from the container, which may be paused). */
async function lockHeld(container: string): Promise<boolean> {
  try {
    const tar = await docker()
      .getContainer(container)
      .getArchive({ path: '/var/lib/moodle-backup/run.lock' });
    tar.resume();
    return true;
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 404) return false;
    throw err;
  }
}

describe('sidecar image (docker exec commands, schedule, S3, health, signals)', () => {
  let stack: MoodleStack;
  let secretDir: string | undefined;
  let sidecar = '';
  let healthPort = 0;
  let anonymousBefore: Set<string>;
  let restored: SnapshotJson;
  /** When /healthz answered 200 again after the restore. */
  let healedAt = 0;
  /** The services as they were created, to bring them back after their volumes are lost. */
  let lost: Awaited<ReturnType<typeof captureContainer>>[] = [];

  const sidecarExec = async (args: string[]): Promise<ExecResult> => execIn(sidecar, args);

  /** A command that takes the run lock; a scheduled run may hold it for a moment (exit 3): try again. */
  async function sidecarExecLocked(args: string[]): Promise<ExecResult> {
    for (let i = 0; ; i++) {
      const r = await sidecarExec(args);
      if (r.exitCode !== 3 || i >= 20) return r;
      await sleep(1_000);
    }
  }

  /** Pauses the sidecar between two runs (while it holds no lock): nothing of it runs until unpaused. */
  async function freezeSidecar(): Promise<void> {
    const c = docker().getContainer(sidecar);
    for (let i = 0; ; i++) {
      await c.pause();
      if (!(await lockHeld(sidecar))) return;
      await c.unpause();
      if (i >= 60) await failWithLogs('the sidecar never released its run lock');
      await sleep(1_000);
    }
  }

  /**
   * `fn` while the sidecar is frozen between two runs. A scheduled run every 15 s stops the stack for a
   * moment: a look at the stack's states just after a command of the test could land in one.
   */
  async function betweenRuns<T>(fn: () => Promise<T>): Promise<T> {
    await freezeSidecar();
    try {
      return await fn();
    } finally {
      await docker().getContainer(sidecar).unpause();
    }
  }

  async function snapshots(): Promise<SnapshotJson[]> {
    const r = await sidecarExec(['snapshots', '--json']);
    if (r.exitCode !== 0) throw new Error(`snapshots --json exited ${r.exitCode}: ${r.stderr}`);
    return JSON.parse(r.stdout) as SnapshotJson[];
  }

  async function failWithLogs(message: string): Promise<never> {
    throw new Error(`${message}\n--- sidecar log ---\n${await containerLogs(sidecar).catch(String)}`);
  }

  beforeAll(async () => {
    const build = await buildSidecarImage();
    if (build.code !== 0) throw new Error(`scripts/build-image.sh exited ${build.code}:\n${build.output}`);
    // One line for the record: "built … in N s: size" or "up to date … : size".
    console.log(`${build.output.trim().split('\n').pop()} [${(build.ms / 1000).toFixed(1)} s]`);

    stack = await createMoodleStack();
    const d = docker();
    const { project, network } = stack;
    const runId = inject('runId');

    // S3 for the sidecar, reachable as http://s3:5000 on the project network.
    await startS3Service(project, network, { alias: 's3', port: 5000, bucket: BUCKET });

    // The sidecar's state volume, as Compose would make it: a project volume the sidecar must not back up.
    const stateVolume = `${project}_backup_state`;
    await d.createVolume({
      Name: stateVolume,
      Labels: {
        'com.docker.compose.project': project,
        'com.docker.compose.volume': 'backup_state',
        [TEST_LABEL]: runId,
      },
    });
    secretDir = await mkdtemp(join(tmpdir(), 'mbst-image-secret-'));
    await writeFile(join(secretDir, 's3_secret'), 'S3RVER\n', { mode: 0o600 });

    anonymousBefore = await danglingAnonymousVolumes();
    sidecar = `${project}-backup-1`;
    const socket = dockerSocket();
    const container = await d.createContainer({
      name: sidecar,
      Image: SIDECAR_IMAGE,
      Env: [
        'TZ=UTC',
        `BACKUP_CRON_EXPRESSION=${SCHEDULE}`,
        // Every scheduled snapshot stays listed (the daily rule alone would keep one per day).
        'BACKUP_KEEP_LAST=100',
        `AWS_S3_BUCKET_NAME=${BUCKET}`,
        'AWS_ENDPOINT=s3:5000',
        'AWS_ENDPOINT_PROTO=http',
        'AWS_S3_PATH_STYLE=true',
        'AWS_S3_CHECKSUMS=when_required',
        'AWS_ACCESS_KEY_ID=S3RVER',
        'AWS_SECRET_ACCESS_KEY_FILE=/run/secrets/s3_secret',
        'LOG_LEVEL=info',
      ],
      Labels: composeLabels(project, 'backup'),
      ExposedPorts: { '8080/tcp': {} },
      HostConfig: {
        Binds: [
          `${socket}:/var/run/docker.sock`,
          `${stateVolume}:/var/lib/moodle-backup`,
          `${join(secretDir, 's3_secret')}:/run/secrets/s3_secret:ro`,
        ],
        NetworkMode: network,
        PortBindings: { '8080/tcp': [{ HostIp: '127.0.0.1', HostPort: '' }] },
      },
      NetworkingConfig: { EndpointsConfig: { [network]: { Aliases: ['backup'] } } },
    });
    await container.start();
    const info = await container.inspect();
    const binding = info.NetworkSettings.Ports['8080/tcp']?.[0];
    expect(binding?.HostIp).toBe('127.0.0.1');
    healthPort = Number(binding?.HostPort);
    expect(healthPort).toBeGreaterThan(0);
  }, 15 * 60_000);

  afterAll(async () => {
    await stack?.remove();
    // Anonymous volumes carry no labels the sweep could match: remove the ones that appeared meanwhile.
    if (anonymousBefore) {
      for (const v of await danglingAnonymousVolumes())
        if (!anonymousBefore.has(v))
          await docker()
            .getVolume(v)
            .remove()
            .catch(() => undefined);
    }
    if (secretDir) await rm(secretDir, { recursive: true, force: true });
  }, 180_000);

  it('runs scheduled backups every 15 s to S3 and lists them with `docker exec <sidecar> snapshots --json`', async () => {
    const deadline = Date.now() + 150_000;
    let found: SnapshotJson[] = [];
    while (found.length < 2) {
      const state = (await docker().getContainer(sidecar).inspect()).State;
      if (!state.Running) await failWithLogs(`the sidecar is not running (exit code ${state.ExitCode})`);
      found = (await snapshots()).filter((s) => s.kind === 'scheduled' && s.status === 'ok');
      if (found.length < 2) {
        if (Date.now() > deadline)
          await failWithLogs(`fewer than two scheduled snapshots by ${new Date(deadline).toISOString()}`);
        await sleep(2000);
      }
    }
    // Another scheduled run may hold the stack stopped right now (every 15 s, slower on a loaded machine):
    // the stack must be back once that run is over, not at an arbitrary instant.
    const running = await until(
      'the stack running again after the scheduled runs',
      async () => {
        const states = await stack.states();
        return Object.values(states).every((s) => s === 'running') ? states : undefined;
      },
      60_000,
      250,
    );
    expect(running).toEqual({ mariadb: 'running', moodle: 'running' });
  }, 240_000);

  it('restores `latest` with `docker exec <sidecar> restore latest --yes` after the volumes are lost', async () => {
    const d = docker();
    const atBackup = await betweenRuns(async () => {
      // The last run resumed the stack and nothing writes to it: its content is the newest snapshot's.
      await stack.waitForDb();
      const fp = await fingerprints(stack);
      expect(Object.keys(fp.db.tables).length).toBeGreaterThanOrEqual(5);
      // Lose everything: the two services and their three volumes are gone, as on a fresh host.
      const specs = [
        await captureContainer(stack.containers.mariadb),
        await captureContainer(stack.containers.moodle),
      ];
      for (const name of [stack.containers.moodle, stack.containers.mariadb])
        await d.getContainer(name).remove({ force: true, v: true });
      for (const v of Object.values(stack.volumes)) await d.getVolume(v).remove();
      lost = specs;
      return fp;
    });
    // Scheduled runs now fail (no volumes to back up), so the newest snapshot is the one before the loss.
    const newest = (await snapshots()).find((s) => s.status === 'ok' && s.kind !== 'pre-restore');
    expect(newest?.kind).toBe('scheduled');

    const r = await sidecarExecLocked(['restore', 'latest', '--yes']);
    if (r.exitCode !== 0) await failWithLogs(`restore exited ${r.exitCode}:\n${r.stderr}\n${r.stdout}`);
    expect(r.stdout).toContain(`restored ${newest?.id}`);
    restored = newest as SnapshotJson;

    // `docker compose up` again: the services come back on the restored volumes. Frozen meanwhile, so that
    // no scheduled run stops them between their start and the look at their states.
    const [mariadbSpec, moodleSpec] = lost;
    await betweenRuns(async () => {
      await (await d.createContainer(mariadbSpec as (typeof lost)[number])).start();
      await stack.waitForDb(120_000);
      await (await d.createContainer(moodleSpec as (typeof lost)[number])).start();
      expect(await stack.states()).toEqual({ mariadb: 'running', moodle: 'running' });
    });
    // Scheduled runs go on and briefly stop the stack: compare at a moment the database answers.
    let after: Fingerprints | undefined;
    for (let i = 0; !after; i++) {
      after = await fingerprints(stack).catch(async (err: unknown) => {
        if (i >= 10) throw err;
        await stack.waitForDb(60_000);
        return undefined;
      });
    }
    expectSame(atBackup, after);
  }, 600_000);

  it('serves /healthz and /metrics on the published 127.0.0.1 port', { timeout: 120_000 }, async () => {
    let health = await fetch(`http://127.0.0.1:${healthPort}/healthz`);
    let body = (await health.json()) as { status: string; lastSnapshot: string | null };
    // The runs while the volumes were gone failed; the next scheduled run after the restore heals it.
    const healed = () => health.status === 200 && (body.lastSnapshot ?? '') > restored.id;
    for (let i = 0; !healed() && i < 90; i++) {
      await sleep(1_000);
      health = await fetch(`http://127.0.0.1:${healthPort}/healthz`);
      body = (await health.json()) as typeof body;
    }
    expect(health.status, JSON.stringify(body)).toBe(200);
    expect(body.status).toBe('ok');
    healedAt = Date.now();
    const listed = await snapshots();
    expect(listed.find((s) => s.id === body.lastSnapshot)).toMatchObject({ kind: 'scheduled', status: 'ok' });
    expect((body.lastSnapshot ?? '') > restored.id, `${body.lastSnapshot} after ${restored.id}`).toBe(true);
    const metrics = await (await fetch(`http://127.0.0.1:${healthPort}/metrics`)).text();
    expect(metrics).toContain('moodle_backup_runs_total');
    expect(metrics).toMatch(/^moodle_backup_runs_total\{result="success"\} ([3-9]|\d\d+)/m);
  });

  it("is reported healthy by the image's HEALTHCHECK", async () => {
    const deadline = Date.now() + 150_000;
    let status = '';
    while (Date.now() < deadline) {
      const info = await docker().getContainer(sidecar).inspect();
      status = info.State.Health?.Status ?? 'none';
      if (status === 'healthy') break;
      // Docker marks a paused container unhealthy until its next probe (the restore test paused it), and the
      // runs while the volumes were lost failed: only a probe that failed after /healthz healed counts.
      const last = info.State.Health?.Log?.at(-1);
      if (status === 'unhealthy' && last && last.ExitCode !== 0 && Date.parse(last.End) > healedAt) {
        await failWithLogs(`unhealthy: ${last.ExitCode} ${last.Output}`);
      }
      await sleep(2000);
    }
    expect(status).toBe('healthy');
  }, 180_000);

  it('runs `docker exec <sidecar> backup` (every command is on PATH)', async () => {
    const before = await snapshots();
    const r = await sidecarExecLocked(['backup']);
    if (r.exitCode !== 0) await failWithLogs(`backup exited ${r.exitCode}:\n${r.stderr}`);
    const after = await snapshots();
    const added = after.filter((s) => !before.some((b) => b.id === s.id));
    // Scheduled runs go on meanwhile: exactly one manual snapshot is new, and every new one is complete.
    expect(added.filter((s) => s.kind === 'manual').map((s) => s.status)).toEqual(['ok']);
    expect(added.every((s) => s.status === 'ok')).toBe(true);
    expect(await betweenRuns(() => stack.states())).toEqual({ mariadb: 'running', moodle: 'running' });
    for (const verb of ['prune', 'verify', 'serve', 'moodle-backup']) {
      expect((await sidecarExec(['sh', '-c', `command -v ${verb}`])).stdout.trim()).toBe(
        `/usr/local/bin/${verb}`,
      );
    }
    expect((await sidecarExec(['sh', '-c', 'command -v zstd && readlink /proc/1/exe'])).stdout).toMatch(
      /zstd\n.*tini/,
    );
  }, 300_000);

  it('`restore <id> --path` of a snapshot saved whole says so and how to restore instead, changing nothing', async () => {
    // This sidecar reads the volumes through Docker's archive API (no /backup/<name> mounts): the dataroot
    // is saved whole, not file by file. (The demo puts a file back with --path where it is mounted.)
    const [file, before] = await betweenRuns(
      async () =>
        [
          (
            await execIn(stack.containers.moodle, [
              'sh',
              '-c',
              'cd /bitnami/moodledata && find filedir -type f | sort | head -n 1',
            ])
          ).stdout.trim(),
          await stack.states(),
        ] as const,
    );
    expect(file).toMatch(/^filedir\/[0-9a-f]{2}\/[0-9a-f]{2}\/[0-9a-f]{40}$/);
    expect(before).toEqual({ mariadb: 'running', moodle: 'running' });
    const newest = (await snapshots()).find((s) => s.status === 'ok');
    const r = await sidecarExecLocked(['restore', newest?.id as string, '--path', file]);
    expect(r.exitCode).toBe(6);
    expect(r.stderr).toContain('were saved whole');
    expect(r.stderr).toContain(`restore ${newest?.id} --volume <name>`);
    expect(await betweenRuns(() => stack.states())).toEqual(before);
  }, 300_000);

  it('leaves no anonymous volumes behind (helpers are made from the image, which declares VOLUMEs)', async () => {
    const now = await danglingAnonymousVolumes();
    const leaked = [...now].filter((v) => !anonymousBefore.has(v));
    // Each helper container created from this image gets anonymous volumes for /archive and
    // /var/lib/moodle-backup; removing a helper without `v: true` leaves them behind on every run.
    expect(
      leaked,
      'anonymous volumes left by helper containers (see src/volume/archive-api.ts withHelper)',
    ).toEqual([]);
  });

  it('stops on SIGTERM within seconds (tini forwards the signal to node)', async () => {
    const c = docker().getContainer(sidecar);
    const t0 = Date.now();
    await c.stop({ t: 10 });
    const ms = Date.now() - t0;
    const info = await c.inspect();
    expect(ms, `docker stop took ${ms} ms`).toBeLessThan(10_000);
    expect(info.State.ExitCode, await containerLogs(sidecar, 20)).toBe(0);
    expect(await containerLogs(sidecar, 20)).toContain('"step":"shutdown"');
  }, 60_000);
});

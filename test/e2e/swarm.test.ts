import type Docker from 'dockerode';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isSidecarError, type SidecarError } from '../../src/common/errors.js';
import type { RunState } from '../../src/stack/state.js';
import { assertManager } from '../../src/stack/swarm.js';
import { demuxLogs } from '../../src/volume/restore-volume.js';
import { type ExecResult, execIn, execOk, IMAGES } from '../harness/docker.js';
import { fingerprintDb, fingerprintVolume, type VolumeFingerprint } from '../harness/fingerprint.js';
import { DATAROOT, diffMinusExcludes } from '../harness/moodle.js';
import {
  hostHasDocker0,
  netnsList,
  type SecondEngine,
  secondEngineUnavailable,
  startSecondEngine,
} from '../harness/second-engine.js';
import { readContainerFile } from '../harness/sidecar.js';
import { buildSidecarImage, SIDECAR_IMAGE } from '../harness/sidecar-image.js';
import { DB, sqlIn, waitForMariaDb } from '../harness/stack.js';
import {
  deployStack,
  engineCli,
  initSwarm,
  removeStack,
  serviceCounts,
  specReplicas,
  taskContainer,
  until,
  waitServicesRunning,
} from '../harness/swarm.js';

/**
 * Issue 20: the sidecar as a service of a swarm stack (`docker stack deploy`), on a one-node swarm of a
 * second engine in its own network namespace (the main engine is never touched). One engine and one stack
 * for the whole file: backup scales Moodle (2 replicas) and MariaDB to 0 and back; a global service is
 * refused; a sidecar killed with SIGKILL mid-backup scales everything back after swarm restarts it; and a
 * restore after `docker stack rm` + `docker stack deploy` brings the data back byte for byte.
 */

const unavailable = secondEngineUnavailable();
if (unavailable)
  console.warn(`\n!!!!!!!! swarm suite SKIPPED: ${unavailable} (CI=1 makes this a failure).\n`);

const STACK = 'moodle';
const STATE_FILE = '/var/lib/moodle-backup/state.json';
const DATA_VOLUMES = ['mariadb_data', 'moodle_data', 'moodledata_data'] as const;
/**
 * The services a run scales, and their replicas. The sidecar's own task is awaited as a running container: swarm
 * calls its task `running` only after the image's HEALTHCHECK passed (interval 30 s), which a test need not wait for.
 */
const WANT = { mariadb: 1, moodle: 2 };
const BACK = { mariadb: '1/1', moodle: '2/2' };
/** Issue 20: after the killed sidecar's restart, every service has its replicas back within this. */
const RECOVERY_LIMIT_MS = 30_000;

function stackFile(socket: string): string {
  const backupMounts = DATA_VOLUMES.map((v) => `      - ${v}:/backup/${v}`).join('\n');
  return `version: "3.8"
services:
  mariadb:
    image: ${IMAGES.mariadb}
    environment:
      MARIADB_ROOT_PASSWORD: ${DB.rootPassword}
      MARIADB_DATABASE: ${DB.name}
      MARIADB_USER: ${DB.user}
      MARIADB_PASSWORD: ${DB.password}
    volumes: [mariadb_data:/bitnami/mariadb]
    stop_grace_period: 60s
    # The engine's namespace has no IPVS for a service VIP ("No route to host"): DNS round robin instead.
    deploy: { endpoint_mode: dnsrr }
  moodle:
    image: ${IMAGES.moodle}
    environment:
      MOODLE_DATABASE_HOST: mariadb
      MOODLE_DATABASE_NAME: ${DB.name}
      MOODLE_DATABASE_USER: ${DB.user}
      MOODLE_DATABASE_PASSWORD: ${DB.password}
    volumes: [moodle_data:/bitnami/moodle, moodledata_data:/bitnami/moodledata]
    deploy: { replicas: 2 }
  cron:
    image: ${IMAGES.busybox}
    # Ends on SIGTERM (a bare sleep as PID 1 ignores it and holds every docker stack rm for 10 s).
    command: [sh, -c, "trap 'exit 0' TERM; while :; do sleep 1; done"]
    volumes: [moodledata_data:/data]
    deploy:
      mode: global
      labels: { moodle-backup.stop: "false" }
  backup:
    image: ${SIDECAR_IMAGE}
    environment: { TZ: UTC, BACKUP_CRON_EXPRESSION: "0 3 * * *", LOG_LEVEL: info }
    volumes:
      - ${socket}:/var/run/docker.sock
      - backups:/archive
      - backup_state:/var/lib/moodle-backup
${backupMounts}
    deploy:
      placement: { constraints: [node.role == manager] }
volumes: { mariadb_data: {}, moodle_data: {}, moodledata_data: {}, backups: {}, backup_state: {} }
`;
}

interface Saved {
  snapshot: string;
  files: Record<string, VolumeFingerprint>;
  db: Awaited<ReturnType<typeof fingerprintDb>>;
}

describe.skipIf(unavailable !== null && !process.env.CI)('Docker Swarm stack (second engine)', () => {
  let engine: SecondEngine | undefined;
  let saved: Saved | undefined;
  const t0 = Date.now();
  const d = () => engine?.docker as Docker;
  const sidecar = () => taskContainer(d(), `${STACK}_backup`);
  const inSidecar = async (cmd: string[]): Promise<ExecResult> =>
    execIn(await sidecar(), cmd, { client: d() });
  const counts = () => serviceCounts(d(), STACK, Object.keys(WANT));
  const sql = async (q: string) => sqlIn(await taskContainer(d(), `${STACK}_mariadb`), d())(q);
  const files = async () => {
    const out: Record<string, VolumeFingerprint> = {};
    for (const v of ['moodle_data', 'moodledata_data'])
      out[v] = await fingerprintVolume(`${STACK}_${v}`, { client: d() });
    return out;
  };

  beforeAll(async () => {
    expect(await hostHasDocker0(), 'the main engine has docker0 before the test').toBe(true);
    const build = await buildSidecarImage();
    if (build.code !== 0) throw new Error(`scripts/build-image.sh exited ${build.code}:\n${build.output}`);
    engine = await startSecondEngine();
    const loadMs = await engine.load([
      IMAGES.mariadb,
      IMAGES.moodle,
      IMAGES.busybox,
      IMAGES.base,
      SIDECAR_IMAGE,
    ]);
    // Before `swarm init`: an engine that is no swarm manager is refused with the fix named.
    const refused = await assertManager(engine.docker, STACK).then(
      () => null,
      (err: unknown) => err,
    );
    expect(isSidecarError(refused, 'SWARM_NOT_MANAGER'), String(refused)).toBe(true);
    expect((refused as SidecarError).message).toContain('not part of a swarm');
    await initSwarm(engine);
    await deployStack(engine, STACK, stackFile(engine.socket));
    const upMs = await waitServicesRunning(d(), STACK, WANT, 120_000);
    await waitForMariaDb(await taskContainer(d(), `${STACK}_mariadb`), 60_000, d());
    await seed(d());
    console.log(
      `swarm: images loaded in ${(loadMs / 1000).toFixed(1)} s, stack up in ${(upMs / 1000).toFixed(1)} s, ` +
        `ready ${((Date.now() - t0) / 1000).toFixed(1)} s after the start`,
    );
  }, 10 * 60_000);

  afterAll(async () => {
    const name = engine?.name;
    await engine?.destroy();
    expect(await hostHasDocker0(), 'the main engine still has docker0').toBe(true);
    if (name) expect(await netnsList()).not.toContain(name);
    console.log(`swarm suite: ${((Date.now() - t0) / 1000).toFixed(1)} s wall time`);
  }, 120_000);

  it('backs up by scaling Moodle, then MariaDB, to 0 and back to their replica counts', async () => {
    const tasksBefore = await taskIds(d(), 'moodle');
    const before = { files: await files(), db: await fingerprintDb(sql, DB.name) };
    const r = await inSidecar(['backup']);
    expect(r.exitCode, r.stderr).toBe(0);
    const lines = logLines(r.stderr);
    const scaled = (step: string) =>
      lines.filter((l) => l.step === step).map((l) => `${l.service} ${l.replicas}`);
    // Moodle is scaled to 0 before MariaDB; both come back together (each line once its tasks run).
    expect(scaled('quiesce')).toEqual([`${STACK}_moodle 2`, `${STACK}_mariadb 1`]);
    expect(scaled('resume').sort()).toEqual([`${STACK}_mariadb 1`, `${STACK}_moodle 2`]);
    expect(await counts()).toEqual(BACK);
    // Scaled to 0 and back: swarm started new tasks; the global service was left alone.
    const tasksAfter = await taskIds(d(), 'moodle');
    expect(tasksAfter.filter((t) => tasksBefore.includes(t))).toEqual([]);
    const listed = JSON.parse((await inSidecar(['snapshots', '--json'])).stdout) as {
      id: string;
      status: string;
    }[];
    expect(listed.map((s) => s.status)).toEqual(['ok']);
    saved = { snapshot: listed[0]?.id ?? '', ...before };
    expect(await readContainerFile(await sidecar(), STATE_FILE, d()), 'the state file is cleared').toBeNull();
  }, 120_000);

  it('refuses a global service that would have to stop, naming the setting, and changes nothing', async () => {
    // Without its stop=false deploy label, the global service mounts a backed-up volume: it would be stopped.
    await engineCli(engine as SecondEngine, [
      'service',
      'update',
      '--detach',
      '--label-rm',
      'moodle-backup.stop',
      `${STACK}_cron`,
    ]);
    try {
      const r = await inSidecar(['backup']);
      expect(r.exitCode, r.stderr).toBe(2);
      expect(r.stderr).toContain(`global service ${STACK}_cron cannot be stopped`);
      expect(r.stderr).toContain('deploy: {mode: replicated, replicas: 1}');
      expect(await counts()).toEqual(BACK);
      expect(await specReplicas(d(), `${STACK}_cron`)).toBeNull();
      const listed = JSON.parse((await inSidecar(['snapshots', '--json'])).stdout) as unknown[];
      expect(listed).toHaveLength(1);
    } finally {
      await engineCli(engine as SecondEngine, [
        'service',
        'update',
        '--detach',
        '--label-add',
        'moodle-backup.stop=false',
        `${STACK}_cron`,
      ]);
    }
  }, 60_000);

  it('scales everything back within 30 s after the sidecar is killed (SIGKILL) mid-backup', async () => {
    const victim = await sidecar();
    const exec = await d()
      .getContainer(victim)
      .exec({ Cmd: ['backup'], AttachStdout: false, AttachStderr: false });
    await exec.start({ Detach: true });
    // The kill lands while Moodle is scaled to 0 and the state file records it.
    let state: RunState | null = null;
    await until(
      async () => {
        const text = await readContainerFile(victim, STATE_FILE, d());
        state = text ? (JSON.parse(text) as RunState) : null;
        if (state?.quiesced.some((q) => q.action === 'scale' && q.replicas === 2)) {
          if ((await specReplicas(d(), `${STACK}_moodle`)) === 0) return true;
        }
        if (!(await exec.inspect()).Running)
          throw new Error('the backup ended before Moodle was scaled to 0');
        return false;
      },
      60_000,
      'the backup to scale Moodle to 0',
    );
    await d().getContainer(victim).kill({ signal: 'SIGKILL' });
    const killedAt = Date.now();
    const trace: string[] = [];
    const ms = await waitServicesRunning(d(), STACK, WANT, RECOVERY_LIMIT_MS + 30_000, trace);
    const recoveredMs = Date.now() - killedAt;
    console.log(`swarm: services after the kill:\n${trace.join('\n')}`);
    console.log(
      `swarm: every service back ${(recoveredMs / 1000).toFixed(1)} s after the SIGKILL (${ms} ms waited)`,
    );
    expect(recoveredMs, 'replicas back within 30 s of the kill').toBeLessThanOrEqual(RECOVERY_LIMIT_MS);
    const revived = await sidecar();
    expect(revived, 'swarm started a new sidecar task').not.toBe(victim);
    // The restarted sidecar did the scaling back (its log line follows its own wait for the tasks).
    let steps: string[] = [];
    await until(
      async () => {
        steps = logLines(
          demuxLogs(await d().getContainer(revived).logs({ stdout: true, stderr: true, follow: false })),
        )
          .filter((l) => l.step === 'recover' || l.step === 'resume')
          .map((l) => `${String(l.time).slice(11, 23)} ${l.step} ${l.service ?? ''} ${l.msg}`);
        return steps.some((l) => l.includes('resume moodle_moodle scaled moodle_moodle back to 2'));
      },
      30_000,
      () => `the restarted sidecar to log the scaling back (its log so far:\n${steps.join('\n')})`,
    );
    const created = (await d().getContainer(revived).inspect()).State.StartedAt;
    console.log(
      `swarm: killed ${new Date(killedAt).toISOString()}; new sidecar started ${created}\n${steps.join('\n')}`,
    );
    await until(
      async () => (await readContainerFile(await sidecar(), STATE_FILE, d())) === null,
      30_000,
      'the restarted sidecar to clear the state file',
    );
    const listed = JSON.parse((await inSidecar(['snapshots', '--json'])).stdout) as { id: string }[];
    expect(
      listed.map((s) => s.id),
      'no partial snapshot of the killed run',
    ).toEqual([saved?.snapshot]);
  }, 120_000);

  it('restores onto a fresh stack after docker stack rm + deploy, byte for byte', async () => {
    const e = engine as SecondEngine;
    const s = saved as Saved;
    const marks: string[] = [];
    const mark = (what: string, since: number) =>
      marks.push(`${what} ${((Date.now() - since) / 1000).toFixed(1)} s`);
    let t = Date.now();
    await removeStack(e, STACK);
    // A fresh site: the data volumes are gone; the backups stay (they are on the target).
    for (const v of DATA_VOLUMES) await d().getVolume(`${STACK}_${v}`).remove();
    mark('stack rm', t);
    t = Date.now();
    await deployStack(e, STACK, stackFile(e.socket));
    await waitServicesRunning(d(), STACK, WANT, 120_000);
    await waitForMariaDb(await taskContainer(d(), `${STACK}_mariadb`), 60_000, d());
    mark('deploy', t);
    expect(await fingerprintDb(sql, DB.name)).not.toEqual(s.db);
    t = Date.now();
    const r = await inSidecar(['restore', s.snapshot, '--yes', '--no-safety-snapshot']);
    mark('restore', t);
    console.log(`swarm: fresh-stack restore: ${marks.join(', ')}`);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(await counts()).toEqual(BACK);
    await waitForMariaDb(await taskContainer(d(), `${STACK}_mariadb`), 60_000, d());
    expect(await fingerprintDb(sql, DB.name), 'the database is the saved one').toEqual(s.db);
    const now = await files();
    for (const v of Object.keys(s.files))
      expect(diffMinusExcludes(s.files[v] as VolumeFingerprint, now[v] as VolumeFingerprint), v).toEqual([]);
  }, 180_000);
});

/** A small Moodle-like site: users and log rows in MariaDB, a seeded dataroot (shared by both replicas). */
async function seed(d: Docker): Promise<void> {
  const db = await taskContainer(d, `${STACK}_mariadb`);
  await sqlIn(
    db,
    d,
  )(
    'CREATE TABLE mdl_user (id INT PRIMARY KEY, username VARCHAR(64)) ENGINE=InnoDB; ' +
      "INSERT INTO mdl_user SELECT seq, CONCAT('user', seq) FROM seq_1_to_500; " +
      'CREATE TABLE mdl_logstore (id INT PRIMARY KEY, userid INT, action VARCHAR(32)) ENGINE=InnoDB; ' +
      "INSERT INTO mdl_logstore SELECT seq, seq % 500, 'viewed' FROM seq_1_to_2000;",
  );
  const { readFile } = await import('node:fs/promises');
  const script = await readFile(new URL('../harness/seed-moodledata.sh', import.meta.url), 'utf8');
  await execOk(await taskContainer(d, `${STACK}_moodle`), ['bash', '-c', script, 'seed', DATAROOT], {
    env: ['FILES=20', 'BLOB_KB=8', 'BIG_MB=1'],
    client: d,
  });
}

async function taskIds(d: Docker, service: string): Promise<string[]> {
  const list = await d.listContainers({
    filters: { label: [`com.docker.swarm.service.name=${STACK}_${service}`], status: ['running'] },
  });
  return list.map((c) => c.Id);
}

function logLines(stderr: string): Record<string, unknown>[] {
  return stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

import { createHash } from 'node:crypto';
import { generateIdentity, identityToRecipient } from 'age-encryption';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { composeLabels } from '../harness/compose.js';
import {
  docker,
  type ExecResult,
  execIn,
  execOk,
  sweepLeftovers,
  TEST_LABEL,
  uniqueName,
} from '../harness/docker.js';
import { createPgStack, PG, PG_VOLUMES, type PgStack, pgFingerprint, pgStack } from '../harness/pg-stack.js';
import {
  buildSidecarImage,
  containerLogs,
  dockerSocket,
  type S3Service,
  SIDECAR_IMAGE,
  startS3Service,
} from '../harness/sidecar-image.js';

/**
 * Disaster recovery on a new host: the old stack and every volume are gone (`docker compose down -v`),
 * the sidecar's state with them. What is left is the compose file and the S3 target's credentials (and the
 * age identity). `docker compose up -d` makes an empty stack, whose database image initialises a fresh
 * server and whose web image installs a fresh site; `docker exec <sidecar> restore latest --yes` must bring
 * the real site back.
 */
describe('new host: restore latest from an encrypted S3 target into a freshly created PostgreSQL stack', () => {
  // The S3 server lives outside the Moodle project (its own project and network), so it outlives `down -v`.
  // Not the host's s3rver on 127.0.0.1: reaching it needs host networking, and a host-network container
  // shares the host's name, so other sidecar runs on this host took its helpers for a dead process's.
  const s3Project = uniqueName('s3');
  const s3Network = `${s3Project}_default`;
  const bucket = 'backups';
  let s3: S3Service;
  let stack: PgStack;
  let identity = '';
  let recipient = '';

  /** The `backup` service of the compose file: the sidecar image, the stack's volumes at /backup/<name>. */
  async function startSidecar(project: string, env: string[]): Promise<string> {
    const name = `${project}-backup-1`;
    const c = await docker().createContainer({
      name,
      Image: SIDECAR_IMAGE,
      Env: [
        'TZ=UTC',
        `AWS_S3_BUCKET_NAME=${bucket}`,
        `AWS_ENDPOINT=${s3.endpoint}`,
        'AWS_ENDPOINT_PROTO=http',
        'AWS_ACCESS_KEY_ID=S3RVER',
        'AWS_SECRET_ACCESS_KEY=S3RVER',
        ...env,
      ],
      Labels: composeLabels(project, 'backup'),
      HostConfig: {
        Binds: [
          `${dockerSocket()}:/var/run/docker.sock`,
          ...PG_VOLUMES.map((v) => `${project}_${v}:/backup/${v}`),
        ],
        // tmpfs over the image's VOLUMEs: no anonymous volume outlives the test, and the state dies with it.
        Mounts: [
          { Type: 'tmpfs', Source: '', Target: '/var/lib/moodle-backup' },
          { Type: 'tmpfs', Source: '', Target: '/archive' },
        ],
        NetworkMode: `${project}_default`,
      },
      NetworkingConfig: { EndpointsConfig: { [`${project}_default`]: { Aliases: ['backup'] } } },
    });
    await docker().getNetwork(s3Network).connect({ Container: c.id });
    await c.start();
    return name;
  }

  async function run(sidecar: string, args: string[]): Promise<ExecResult> {
    const r = await execIn(sidecar, args);
    if (r.exitCode !== 0) {
      throw new Error(
        `${args.join(' ')} exited ${r.exitCode}:\n${r.stderr.slice(-3000)}\n--- sidecar log ---\n${await containerLogs(sidecar).catch(String)}`,
      );
    }
    return r;
  }

  beforeAll(async () => {
    const [build, id] = await Promise.all([buildSidecarImage(), generateIdentity()]);
    if (build.code !== 0) throw new Error(`scripts/build-image.sh exited ${build.code}:\n${build.output}`);
    identity = id;
    recipient = await identityToRecipient(id);
    await docker().createNetwork({
      Name: s3Network,
      Labels: { 'com.docker.compose.project': s3Project, [TEST_LABEL]: inject('runId') },
    });
    s3 = await startS3Service(s3Project, s3Network, { alias: 's3', port: 9000, bucket });
    stack = await createPgStack();
  }, 15 * 60_000);

  afterAll(async () => {
    await stack?.remove();
    await sweepLeftovers({ project: s3Project });
  }, 180_000);

  it('back up (online, encrypted) on the old host; down -v; up -d on the new one; restore latest; site and cron work', async () => {
    const t0 = Date.now();
    const old = await startSidecar(stack.project, [`BACKUP_AGE_RECIPIENTS=${recipient}`]);
    await stack.sql("UPDATE mdl_config SET value = 'old-host-site' WHERE name = 'release'");
    const rows = await pgFingerprint(stack);
    const blob = await execOk(stack.containers.moodle, [
      'sha256sum',
      '/bitnami/moodledata/filedir/ab/cd/abcd0001',
    ]);
    // A pool file hard-linked from outside the pool (the tarball keeps the link, not the store) and a
    // blob-shaped symlink beside it: both must come back as they were, through the image's own mounts.
    const text = 'a pool file linked from outside the pool';
    const h = createHash('sha1').update(text).digest('hex');
    const pool = `filedir/${h.slice(0, 2)}/${h.slice(2, 4)}`;
    const link = createHash('sha1').update('a symlink').digest('hex');
    const odd = `cd /bitnami/moodledata && stat -c '%i %h' ${pool}/${h} course-copy.txt && readlink ${pool}/${link}`;
    await execOk(stack.containers.moodle, [
      'sh',
      '-c',
      `cd /bitnami/moodledata && mkdir -p ${pool} && printf %s '${text}' > ${pool}/${h} && ln ${pool}/${h} course-copy.txt && ln -s ${h} ${pool}/${link}`,
    ]);
    const oddBefore = (await execOk(stack.containers.moodle, ['sh', '-c', odd])).split('\n');
    expect(oddBefore[0]).toMatch(/^\d+ 2$/);
    expect(oddBefore.slice(0, 3)).toEqual([oddBefore[0], oddBefore[0], h]);
    // Online mode: the database as a pg_dump, the riskier restore on a new host (fresh server, then the load).
    const first = JSON.parse((await run(old, ['sh', '-c', 'BACKUP_MODE=online backup --json'])).stdout) as {
      id: string;
    };
    // The next night's run, as the schedule takes it: it starts from the first one's listing (on the state
    // volume) and lists again only the directory of the file added since.
    const late = 'a pool file added between the two backups';
    const lh = createHash('sha1').update(late).digest('hex');
    const latePath = `filedir/${lh.slice(0, 2)}/${lh.slice(2, 4)}/${lh}`;
    await execOk(stack.containers.moodle, [
      'sh',
      '-c',
      `cd /bitnami/moodledata && mkdir -p $(dirname ${latePath}) && printf %s '${late}' > ${latePath}`,
    ]);
    const again = await run(old, ['sh', '-c', 'BACKUP_MODE=online backup --json']);
    expect(again.stderr).toContain(`changed since ${first.id} listed again, 1 new stored`);
    const online = JSON.parse(again.stdout) as { id: string };
    const tBackup = Date.now();

    // The old host is lost: containers, volumes, network, and the sidecar's state with them.
    await stack.remove();
    const left = await docker().listVolumes({
      filters: { label: [`com.docker.compose.project=${stack.project}`] },
    });
    expect(left.Volumes ?? []).toEqual([]);

    // The new host: the same compose file brought up on empty volumes. The database image initialises an
    // empty server; the web image's first start installs a fresh site (here as Bitnami's installer would:
    // its own tables and settings), which the restore must replace whole.
    stack = pgStack(stack.project);
    await stack.up();
    await stack.sql(
      "CREATE TABLE mdl_config (id BIGSERIAL PRIMARY KEY, name VARCHAR(190) NOT NULL UNIQUE, value TEXT NOT NULL); INSERT INTO mdl_config (name, value) VALUES ('version', '2024100700.00'), ('release', 'fresh-install'); CREATE TABLE mdl_course (id BIGSERIAL PRIMARY KEY, fullname VARCHAR(254), summary TEXT)",
    );
    expect(await stack.page()).toMatch(/200 OK[\s\S]*0 courses/);
    const sidecar = await startSidecar(stack.project, [`BACKUP_AGE_IDENTITY=${identity}`]);
    const tUp = Date.now();

    const listed = JSON.parse((await run(sidecar, ['snapshots', '--json'])).stdout) as { id: string }[];
    expect(listed.map((s) => s.id)).toContain(online.id);
    const restored = await run(sidecar, ['restore', 'latest', '--yes']);
    expect(restored.stdout).toContain(`restored ${online.id}`);
    const tRestore = Date.now();

    expect(await stack.states()).toEqual({ postgres: 'running', moodle: 'running' });
    expect(await pgFingerprint(stack)).toEqual(rows);
    expect(await stack.sql("SELECT value FROM mdl_config WHERE name = 'release'")).toBe('old-host-site\n');
    expect(
      await execOk(stack.containers.moodle, ['sha256sum', '/bitnami/moodledata/filedir/ab/cd/abcd0001']),
    ).toBe(blob);
    // One file under two names again (the inode is the new volume's), and the symlink.
    const oddAfter = (await execOk(stack.containers.moodle, ['sh', '-c', odd])).split('\n');
    expect(oddAfter[0]).toMatch(/^\d+ 2$/);
    expect(oddAfter.slice(0, 3)).toEqual([oddAfter[0], oddAfter[0], h]);
    expect(await execOk(stack.containers.moodle, ['cat', `/bitnami/moodledata/${pool}/${h}`])).toBe(text);
    expect(await execOk(stack.containers.moodle, ['cat', `/bitnami/moodledata/${latePath}`])).toBe(late);
    expect(await stack.page()).toMatch(/200 OK[\s\S]*300 courses/);
    // Moodle's cron runs against the restored database (it records its run in mdl_config).
    const cron = await execIn(stack.containers.moodle, ['php', '/bitnami/moodle/admin/cli/cron.php']);
    expect(cron.exitCode, cron.stderr).toBe(0);
    expect(Number(await stack.sql("SELECT value FROM mdl_config WHERE name = 'lastcron'"))).toBeGreaterThan(
      Math.floor(t0 / 1000) - 1,
    );
    console.log(
      `new-host recovery: backup ${((tBackup - t0) / 1000).toFixed(1)} s, new stack up ${((tUp - tBackup) / 1000).toFixed(1)} s, restore ${((tRestore - tUp) / 1000).toFixed(1)} s (${PG.db})`,
    );
  }, 600_000);
});

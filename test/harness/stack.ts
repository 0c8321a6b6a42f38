import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type Docker from 'dockerode';
import {
  composeLabels,
  createProjectResources,
  createService,
  type ServiceSpec,
  waitForFile,
} from './compose.js';
import { docker, execIn, execOk, IMAGES, sweepLeftovers, uniqueName } from './docker.js';
import { startRecording, stopRecording } from './events.js';

export const DB = {
  rootPassword: 'root-secret-pw',
  user: 'bn_moodle',
  password: 'moodle-db-pw',
  name: 'bitnami_moodle',
};
export const VOLUME_NAMES = ['mariadb_data', 'moodle_data', 'moodledata_data'] as const;
export type VolumeName = (typeof VOLUME_NAMES)[number];

export interface SeedOptions {
  /** filedir blobs in moodledata. */
  files?: number;
  /** Average blob size in KiB. */
  blobKb?: number;
  /** Size of the one larger file in MiB. */
  bigMb?: number;
  users?: number;
  logs?: number;
}

export interface StackOptions {
  seed?: SeedOptions | false;
  /** Extra labels per service, e.g. { mariadb: { 'docker-volume-backup.stop-during-backup': 'true' } }. */
  labels?: Partial<Record<'mariadb' | 'moodle', Record<string, string>>>;
  /** Project name; default a unique test name. */
  project?: string;
  /** The engine to create it on (default: the main one, `docker()`), e.g. a second engine's client. */
  docker?: Docker;
  /** Restart policy of both services, e.g. `unless-stopped` as users set it (default: none). */
  restart?: 'unless-stopped' | 'always';
}

export interface MoodleStack {
  project: string;
  network: string;
  /** Container names by service. */
  containers: { mariadb: string; moodle: string };
  /** Full Docker volume names by short name. */
  volumes: Record<VolumeName, string>;
  /** Runs SQL in the mariadb container as root; returns tab-separated rows. */
  sql(query: string): Promise<string>;
  /** Waits until MariaDB answers queries. */
  waitForDb(timeoutMs?: number): Promise<void>;
  exec(service: 'mariadb' | 'moodle', cmd: string[]): ReturnType<typeof execIn>;
  /** Container state by service ('running', 'exited', 'paused', ...). */
  states(): Promise<Record<'mariadb' | 'moodle', string>>;
  remove(): Promise<void>;
}

/** Runs SQL as root in the Moodle database of a MariaDB container; returns tab-separated rows. */
export function sqlIn(container: string, client?: Docker): (query: string) => Promise<string> {
  return (query) =>
    execOk(container, ['mariadb', '-uroot', `-p${DB.rootPassword}`, '-N', '-B', DB.name, '-e', query], {
      client,
    });
}

/** Waits (bounded) until the MariaDB in `container` answers a query as root. */
export async function waitForMariaDb(container: string, timeoutMs = 60_000, client?: Docker): Promise<void> {
  const end = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < end) {
    const r = await execIn(container, ['mariadb', '-uroot', `-p${DB.rootPassword}`, '-e', 'SELECT 1'], {
      client,
    }).catch((e: Error) => ({ exitCode: -1, stdout: '', stderr: e.message }));
    if (r.exitCode === 0) return;
    last = r.stderr;
    await sleep(300);
  }
  throw new Error(`MariaDB in ${container} did not answer within ${timeoutMs} ms: ${last}`);
}

/** The Moodle stand-in service (IMAGES.moodle) with its code and dataroot volumes, on a database given by `env`. */
export function createMoodleStandIn(
  d: Docker,
  s: Pick<ServiceSpec, 'name' | 'network' | 'env' | 'labels' | 'restart'> & {
    volumes: { moodle_data: string; moodledata_data: string };
  },
): Promise<Docker.Container> {
  return createService(d, {
    ...s,
    image: IMAGES.moodle,
    service: 'moodle',
    binds: [`${s.volumes.moodle_data}:/bitnami/moodle`, `${s.volumes.moodledata_data}:/bitnami/moodledata`],
  });
}

/**
 * A Moodle stack like `docker compose up` makes it: project network, `<project>_<volume>` named volumes,
 * `mariadb` and the Moodle stand-in with Compose's labels (moodle depends_on mariadb), optionally seeded.
 */
export async function createMoodleStack(opts: StackOptions = {}): Promise<MoodleStack> {
  const project = opts.project ?? uniqueName('p');
  const d = opts.docker ?? docker();
  const client = opts.docker;
  const { network, volumes } = await createProjectResources(project, VOLUME_NAMES, d);
  await startRecording(project, d);
  const containers = { mariadb: `${project}-mariadb-1`, moodle: `${project}-moodle-1` };
  const stack: MoodleStack = {
    project,
    network,
    containers,
    volumes,
    sql: sqlIn(containers.mariadb, client),
    waitForDb: (timeoutMs) => waitForMariaDb(containers.mariadb, timeoutMs, client),
    exec(service, cmd) {
      return execIn(containers[service], cmd, { client });
    },
    async states() {
      const [a, b] = await Promise.all([
        d.getContainer(containers.mariadb).inspect(),
        d.getContainer(containers.moodle).inspect(),
      ]);
      return { mariadb: a.State.Status, moodle: b.State.Status };
    },
    async remove() {
      stopRecording(project);
      await sweepLeftovers({ project }, d);
    },
  };
  try {
    const mariadb = await createService(d, {
      name: containers.mariadb,
      image: IMAGES.mariadb,
      service: 'mariadb',
      network,
      binds: [`${volumes.mariadb_data}:/bitnami/mariadb`],
      env: [
        `MARIADB_ROOT_PASSWORD=${DB.rootPassword}`,
        `MARIADB_DATABASE=${DB.name}`,
        `MARIADB_USER=${DB.user}`,
        `MARIADB_PASSWORD=${DB.password}`,
      ],
      labels: { ...composeLabels(project, 'mariadb'), ...opts.labels?.mariadb },
      restart: opts.restart,
    });
    const moodle = await createMoodleStandIn(d, {
      name: containers.moodle,
      network,
      volumes,
      env: [
        'MOODLE_DATABASE_HOST=mariadb',
        `MOODLE_DATABASE_NAME=${DB.name}`,
        `MOODLE_DATABASE_USER=${DB.user}`,
        `MOODLE_DATABASE_PASSWORD=${DB.password}`,
      ],
      labels: { ...composeLabels(project, 'moodle', 'mariadb'), ...opts.labels?.moodle },
      restart: opts.restart,
    });
    await mariadb.start();
    await stack.waitForDb();
    await moodle.start();
    await waitForFile(containers.moodle, '/bitnami/moodle/version.php', client);
    if (opts.seed !== false) await seedStack(stack, opts.seed ?? {}, client);
    return stack;
  } catch (err) {
    await stack.remove();
    throw err;
  }
}

/** Seeds the database (thousands of rows in several InnoDB tables) and the Moodle dataroot. */
export async function seedStack(stack: MoodleStack, seed: SeedOptions, client?: Docker): Promise<void> {
  const sqlTemplate = await readFile(new URL('./seed-db.sql', import.meta.url), 'utf8');
  const sql = sqlTemplate
    .replace('@USERS@', String(seed.users ?? 2000))
    .replace('@LOGS@', String(seed.logs ?? 5000));
  await execOk(stack.containers.mariadb, ['mariadb', '-uroot', `-p${DB.rootPassword}`, DB.name], {
    stdin: sql,
    client,
  });
  const script = await readFile(new URL('./seed-moodledata.sh', import.meta.url), 'utf8');
  await execOk(stack.containers.moodle, ['bash', '-c', script, 'seed', '/bitnami/moodledata'], {
    env: [`FILES=${seed.files ?? 120}`, `BLOB_KB=${seed.blobKb ?? 24}`, `BIG_MB=${seed.bigMb ?? 6}`],
    client,
  });
}

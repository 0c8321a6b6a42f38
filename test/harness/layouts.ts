import { readFile } from 'node:fs/promises';
import { composeLabels, createProjectResources, createService, waitForFile } from './compose.js';
import { docker, execOk, IMAGES, sweepLeftovers, uniqueName } from './docker.js';
import { startRecording, stopRecording } from './events.js';
import { DB, sqlIn, waitForMariaDb } from './stack.js';

/** A Moodle image's layout, as test/images/moodle-layouts/entrypoint.sh reproduces it. */
export interface Layout {
  name: 'bitnami' | 'moodlehq' | 'baked' | 'moodle51';
  /** Named volumes of the Moodle service: short name → mount destination. */
  volumes: Record<string, string>;
  /** Code bind-mounted from a host directory (moodle-docker). */
  bind?: string;
  /** The container's configured user (compose `user:`, an image's USER). */
  user?: string;
  /** Moodle's top directory (config.php) and its admin/cli/. */
  root: string;
  cli: string;
  /** $CFG->dataroot, the volume it is on and its path inside the volume. */
  dataroot: string;
  datarootVolume: string;
  subpath: string;
  /** The web server's uid: the owner Moodle's files must have. */
  webUid: number;
  php: string;
  release: string;
}

export const LAYOUTS: Layout[] = [
  {
    name: 'bitnami',
    volumes: { moodle_data: '/bitnami/moodle', moodledata_data: '/bitnami/moodledata' },
    root: '/bitnami/moodle',
    cli: '/bitnami/moodle/admin/cli',
    dataroot: '/bitnami/moodledata',
    datarootVolume: 'moodledata_data',
    subpath: '',
    webUid: 1,
    php: '/opt/bitnami/php/bin/php',
    release: '4.5 (Build: 20241007)',
  },
  {
    name: 'moodlehq',
    volumes: { moodledata: '/var/www/moodledata' },
    bind: '/var/www/html',
    root: '/var/www/html',
    cli: '/var/www/html/admin/cli',
    dataroot: '/var/www/moodledata',
    datarootVolume: 'moodledata',
    subpath: '',
    webUid: 33,
    php: 'php',
    release: '4.5 (Build: 20241007)',
  },
  {
    name: 'baked',
    volumes: { moodledata: '/var/www/moodledata' },
    user: 'nobody',
    root: '/var/www/html',
    cli: '/var/www/html/admin/cli',
    dataroot: '/var/www/moodledata',
    datarootVolume: 'moodledata',
    subpath: '',
    webUid: 65534,
    php: 'php',
    release: '4.5 (Build: 20241007)',
  },
  {
    name: 'moodle51',
    volumes: { moodlecode: '/var/www/moodle', sitedata: '/var/lib/sitedata' },
    user: '1001:1001',
    root: '/var/www/moodle',
    cli: '/var/www/moodle/public/admin/cli',
    dataroot: '/var/lib/sitedata/moodle',
    datarootVolume: 'sitedata',
    subpath: 'moodle',
    webUid: 1001,
    php: 'php',
    release: '5.1 (Build: 20251006)',
  },
];

export interface LayoutStack {
  project: string;
  layout: Layout;
  containers: { mariadb: string; moodle: string };
  /** Full Docker volume names by short name (mariadb_data included). */
  volumes: Record<string, string>;
  sql(query: string): Promise<string>;
  waitForDb(): Promise<void>;
  remove(): Promise<void>;
}

/** The Moodle service's extra labels, e.g. a pre hook. */
export async function createLayoutStack(
  layout: Layout,
  moodleLabels: Record<string, string> = {},
  hostDir?: string,
): Promise<LayoutStack> {
  const d = docker();
  const project = uniqueName(`l${layout.name.slice(0, 4)}`);
  const network = `${project}_default`;
  const volumes: Record<string, string> = {};
  const stack: LayoutStack = {
    project,
    layout,
    containers: { mariadb: `${project}-mariadb-1`, moodle: `${project}-moodle-1` },
    volumes,
    sql: sqlIn(`${project}-mariadb-1`),
    waitForDb: () => waitForMariaDb(`${project}-mariadb-1`),
    async remove() {
      stopRecording(project);
      await sweepLeftovers({ project });
    },
  };
  try {
    const created = await createProjectResources(project, ['mariadb_data', ...Object.keys(layout.volumes)]);
    Object.assign(volumes, created.volumes);
    await startRecording(project);
    const db = await createService(d, {
      name: stack.containers.mariadb,
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
      labels: composeLabels(project, 'mariadb'),
    });
    await db.start();
    await stack.waitForDb();
    const sql = (await readFile(new URL('./seed-db.sql', import.meta.url), 'utf8'))
      .replace('@USERS@', '50')
      .replace('@LOGS@', '100');
    await execOk(stack.containers.mariadb, ['mariadb', '-uroot', `-p${DB.rootPassword}`, DB.name], {
      stdin: sql,
    });
    const binds = Object.entries(layout.volumes).map(([short, dest]) => `${volumes[short]}:${dest}`);
    if (layout.bind && hostDir) binds.push(`${hostDir}:${layout.bind}`);
    const moodle = await createService(d, {
      name: stack.containers.moodle,
      image: IMAGES.layouts,
      service: 'moodle',
      network,
      binds,
      env: [
        `MOODLE_LAYOUT=${layout.name}`,
        'MOODLE_DATABASE_HOST=mariadb',
        `MOODLE_DATABASE_NAME=${DB.name}`,
        `MOODLE_DATABASE_USER=${DB.user}`,
        `MOODLE_DATABASE_PASSWORD=${DB.password}`,
      ],
      labels: { ...composeLabels(project, 'moodle', 'mariadb'), ...moodleLabels },
      ...(layout.user ? { user: layout.user } : {}),
      stopTimeout: 30,
    });
    await moodle.start();
    await waitForFile(stack.containers.moodle, `${layout.root}/config.php`);
    await seedDataroot(stack);
    return stack;
  } catch (err) {
    await stack.remove();
    throw err;
  }
}

/**
 * A small dataroot written as the web server's user, as a running site writes it: content-addressed
 * filedir/ blobs, trashdir/, lang/, muc/, and what the excludes leave out (sessions, temp, lock, cron log).
 * cache/ and localcache/ are left to Moodle's CLI to create (test/images/moodle-layouts/Dockerfile).
 */
async function seedDataroot(stack: LayoutStack): Promise<void> {
  const { layout } = stack;
  const script = `set -e; cd "$1"
for i in 1 2 3 4 5 6; do
  f=$(mktemp); head -c $((i * 3000)) /dev/urandom > "$f"; h=$(sha1sum "$f" | cut -c1-40)
  mkdir -p "filedir/$(echo $h | cut -c1-2)/$(echo $h | cut -c3-4)"; mv "$f" "filedir/$(echo $h | cut -c1-2)/$(echo $h | cut -c3-4)/$h"
done
mkdir -p trashdir lang/de muc sessions temp lock
echo 'de' > lang/de/langconfig.php; echo '<?php' > muc/config.php
echo s > sessions/sess_abc; echo t > temp/t1; echo l > lock/l1; echo cron > moodle-cron.log`;
  await execOk(stack.containers.moodle, ['sh', '-c', script, 'seed', layout.dataroot], {
    user: `${layout.webUid}:${layout.webUid}`,
  });
}

/** Entries the Moodle defaults leave out, `subpath` deep in the volume. */
export function isExcluded(path: string, subpath: string): boolean {
  const rel = subpath ? (path.startsWith(`${subpath}/`) ? path.slice(subpath.length + 1) : null) : path;
  if (rel === null) return false;
  return (
    ['moodle-cron.log', 'climaintenance.html'].includes(rel) ||
    ['cache', 'localcache', 'temp', 'sessions', 'lock'].some((d) => rel.startsWith(`${d}/`))
  );
}

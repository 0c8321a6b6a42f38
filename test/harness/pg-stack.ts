import { setTimeout as sleep } from 'node:timers/promises';
import type Docker from 'dockerode';
import { composeLabels, createProjectResources, createService, waitForFile } from './compose.js';
import { docker, execIn, execOk, IMAGES, sweepLeftovers, uniqueName } from './docker.js';
import { createMoodleStandIn } from './stack.js';

export const PG = { user: 'moodle', password: 'pg-secret-pw', db: 'moodle' };
export const PG_VOLUMES = ['postgres_data', 'moodle_data', 'moodledata_data'] as const;
export type PgVolume = (typeof PG_VOLUMES)[number];

export interface PgStack {
  project: string;
  network: string;
  containers: { postgres: string; moodle: string };
  volumes: Record<PgVolume, string>;
  /** Runs SQL in the Moodle database; returns tab-separated rows. */
  sql(query: string): Promise<string>;
  waitForDb(timeoutMs?: number): Promise<void>;
  /** What the site's front page answers (through PHP's own HTTP client, inside the Moodle container). */
  page(): Promise<string>;
  /** Container state by service. */
  states(): Promise<Record<'postgres' | 'moodle', string>>;
  /** Creates (or adopts) the network and volumes and starts both services, as `docker compose up -d`. */
  up(): Promise<void>;
  /** Removes containers, volumes and network, as `docker compose down -v`. */
  remove(): Promise<void>;
}

/** A compact Moodle-like schema, filled with generate_series: every table gets rows. */
export const PG_SEED = `
CREATE TABLE mdl_config (id BIGSERIAL PRIMARY KEY, name VARCHAR(190) NOT NULL UNIQUE, value TEXT NOT NULL);
INSERT INTO mdl_config (name, value) VALUES ('version', '2024100700.00'), ('release', '4.5 (Build: 20241007)');
INSERT INTO mdl_config (name, value) SELECT 'setting_' || g, repeat(chr(65 + g % 26), 1 + g % 40) FROM generate_series(1, 400) g;
CREATE TABLE mdl_user (id BIGSERIAL PRIMARY KEY, username VARCHAR(100) NOT NULL UNIQUE, email VARCHAR(100), lastname VARCHAR(100), timecreated BIGINT NOT NULL);
INSERT INTO mdl_user (username, email, lastname, timecreated) SELECT 'user' || g, 'user' || g || '@example.org', E'Müller-Ñuñez\\ttab', 1700000000 + g FROM generate_series(1, 2000) g;
CREATE TABLE mdl_course (id BIGSERIAL PRIMARY KEY, fullname VARCHAR(254), summary TEXT);
INSERT INTO mdl_course (fullname, summary) SELECT 'Course ' || g, repeat(E'Summary\\nline. ', g % 50) FROM generate_series(1, 300) g;
CREATE TABLE mdl_files (id BIGSERIAL PRIMARY KEY, contenthash CHAR(40), content BYTEA);
INSERT INTO mdl_files (contenthash, content) SELECT md5(g::text) || 'abcdefgh', decode(md5(g::text), 'hex') FROM generate_series(1, 3000) g;
CREATE TABLE mdl_empty (id BIGSERIAL PRIMARY KEY);
CREATE INDEX mdl_user_email ON mdl_user (email);
`;

/**
 * A Moodle stack on PostgreSQL as `docker compose up` makes it: `postgres` (volume postgres_data at
 * /var/lib/postgresql/data, initialised from POSTGRES_*) and the Moodle stand-in with MOODLE_DATABASE_TYPE=pgsql,
 * Compose's labels, `moodle` depends_on `postgres`. `project` lets a test bring the same project up again.
 */
export function pgStack(project = uniqueName('pg'), d: Docker = docker()): PgStack {
  const network = `${project}_default`;
  const containers = { postgres: `${project}-postgres-1`, moodle: `${project}-moodle-1` };
  const volumes = Object.fromEntries(PG_VOLUMES.map((v) => [v, `${project}_${v}`])) as Record<
    PgVolume,
    string
  >;
  const sql = (query: string) =>
    execOk(containers.postgres, [
      'psql',
      '-X',
      '-U',
      PG.user,
      '-d',
      PG.db,
      '-A',
      '-t',
      '-F',
      '\t',
      '-v',
      'ON_ERROR_STOP=1',
      '-c',
      query,
    ]);
  const stack: PgStack = {
    project,
    network,
    containers,
    volumes,
    sql,
    async waitForDb(timeoutMs = 90_000) {
      const end = Date.now() + timeoutMs;
      let last = '';
      while (Date.now() < end) {
        // Over TCP: the image's initialisation server listens on the socket only.
        const r = await execIn(containers.postgres, [
          'pg_isready',
          '-q',
          '-h',
          '127.0.0.1',
          '-U',
          PG.user,
        ]).catch((e: Error) => ({ exitCode: -1, stdout: '', stderr: e.message }));
        if (r.exitCode === 0) return;
        last = r.stderr;
        await sleep(300);
      }
      throw new Error(`PostgreSQL in ${containers.postgres} did not answer within ${timeoutMs} ms: ${last}`);
    },
    page: () =>
      execOk(containers.moodle, [
        'php',
        '-r',
        '$r = @file_get_contents("http://127.0.0.1:8080/"); echo ($http_response_header[0] ?? "no answer"), "\\n", $r;',
      ]),
    async states() {
      const [a, b] = await Promise.all([
        d.getContainer(containers.postgres).inspect(),
        d.getContainer(containers.moodle).inspect(),
      ]);
      return { postgres: a.State.Status, moodle: b.State.Status };
    },
    async up() {
      await createProjectResources(project, PG_VOLUMES, d);
      const pg = await createService(d, {
        name: containers.postgres,
        image: IMAGES.postgres,
        service: 'postgres',
        network,
        binds: [`${volumes.postgres_data}:/var/lib/postgresql/data`],
        env: [`POSTGRES_USER=${PG.user}`, `POSTGRES_PASSWORD=${PG.password}`, `POSTGRES_DB=${PG.db}`],
        labels: composeLabels(project, 'postgres'),
      });
      const moodle = await createMoodleStandIn(d, {
        name: containers.moodle,
        network,
        volumes,
        env: [
          'MOODLE_DATABASE_TYPE=pgsql',
          'MOODLE_DATABASE_HOST=postgres',
          `MOODLE_DATABASE_NAME=${PG.db}`,
          `MOODLE_DATABASE_USER=${PG.user}`,
          `MOODLE_DATABASE_PASSWORD=${PG.password}`,
        ],
        labels: composeLabels(project, 'moodle', 'postgres'),
      });
      await pg.start();
      await stack.waitForDb();
      await moodle.start();
      await waitForFile(containers.moodle, '/bitnami/moodle/version.php');
    },
    remove: () => sweepLeftovers({ project }, d),
  };
  return stack;
}

/** Starts a PostgreSQL stack, seeds the database and a small dataroot; removes it again on failure. */
export async function createPgStack(): Promise<PgStack> {
  const stack = pgStack();
  try {
    await stack.up();
    await execOk(
      stack.containers.postgres,
      ['psql', '-X', '-q', '-U', PG.user, '-d', PG.db, '-v', 'ON_ERROR_STOP=1'],
      {
        stdin: PG_SEED,
      },
    );
    await execOk(stack.containers.moodle, [
      'sh',
      '-c',
      'cd /bitnami/moodledata && mkdir -p filedir/ab/cd cache && head -c 300000 /dev/urandom > filedir/ab/cd/abcd0001 && echo hi > cache/x && chown -R 1:1 filedir',
    ]);
    return stack;
  } catch (err) {
    await stack.remove();
    throw err;
  }
}

/** Every public table's row count and an md5 of its rows in a fixed order: equal means the same data. */
export async function pgFingerprint(stack: PgStack): Promise<Record<string, string>> {
  const tables = (await stack.sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"))
    .split('\n')
    .filter(Boolean);
  const out: Record<string, string> = {};
  for (const t of tables) {
    out[t] = (
      await stack.sql(
        `SELECT count(*) || ' ' || md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM ${t} x`,
      )
    ).trim();
  }
  return out;
}

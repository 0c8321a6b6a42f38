import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { KNOWN_VARS, readEnv } from '../../src/config/env.js';
import { labelProblems } from '../../src/stack/label-check.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const run = promisify(execFile);

/** The example for new sites (a maintained image) and the one kept for Bitnami sites, with their volumes. */
const EXAMPLES = [
  { file: 'compose.example.yml', volumes: ['mariadb_data', 'moodledata', 'moodlehtml'] },
  { file: 'compose.bitnami.yml', volumes: ['mariadb_data', 'moodle_data', 'moodledata_data'] },
];

interface Service {
  image?: string;
  environment?: Record<string, string | null>;
  volumes?: string[];
  labels?: Record<string, string>;
  healthcheck?: { test: string[] };
  restart?: string;
}

/** `docker-compose config` with the passwords the example requires from .env. */
async function composeConfig(FILE: string): Promise<{
  services: Record<string, Service>;
  volumes: Record<string, unknown>;
}> {
  const { stdout } = await run('docker-compose', ['-f', FILE, 'config'], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      MARIADB_ROOT_PASSWORD: 'root-pw',
      MOODLE_DB_PASSWORD: 'db-pw',
      MOODLE_ADMIN_PASSWORD: 'admin-pw',
    },
    timeout: 60_000,
  });
  return parse(stdout);
}

describe.each(EXAMPLES)('$file', ({ file: FILE, volumes }) => {
  it('is a valid compose file (docker-compose config)', async () => {
    const config = await composeConfig(FILE);
    expect(Object.keys(config.services).sort()).toEqual(['backup', 'mariadb', 'moodle']);
    expect(Object.keys(config.volumes).sort()).toEqual(['backup_state', ...volumes]);
    // Pinned versions: `docker compose up -d` gives the same site next year.
    for (const [name, s] of Object.entries(config.services))
      if (name !== 'backup') expect(s.image, name).toMatch(/:v?\d+(\.\d+)+$/);
    for (const s of Object.values(config.services)) {
      expect(s.restart).toBe('unless-stopped');
      expect(s.healthcheck?.test[0]).toBe('CMD');
    }
    const { mariadb, moodle, backup } = config.services as Record<string, Service>;
    expect(mariadb?.labels?.['moodle-backup.stop']).toBe('true');
    expect(moodle?.labels?.['moodle-backup.stop']).toBe('true');
    // The sidecar switches maintenance mode itself: the example must not teach hooks that do it twice.
    for (const label of ['moodle-backup.pre', 'moodle-backup.post'])
      expect(moodle?.labels?.[label] ?? '', label).not.toContain('maintenance.php');
    expect(backup?.volumes).toEqual(
      expect.arrayContaining([
        '/var/run/docker.sock:/var/run/docker.sock:rw',
        'backup_state:/var/lib/moodle-backup:rw',
        expect.stringMatching(/\/backups:\/archive:rw$/),
        // offen's convention: what is mounted here is what is backed up, read and restored as directories.
        ...volumes.map((v) => `${v}:/backup/${v}:rw`),
      ]),
    );
  });

  it('refuses to start without the passwords from .env', async () => {
    await expect(
      run('docker-compose', ['-f', FILE, 'config', '-q'], {
        cwd: ROOT,
        env: { PATH: process.env.PATH, HOME: process.env.HOME },
        timeout: 60_000,
      }),
    ).rejects.toThrow(/MARIADB_ROOT_PASSWORD|MOODLE_DB_PASSWORD/);
  });

  it('gives the sidecar a configuration it accepts, and comments only name variables it knows', async () => {
    const { services } = await composeConfig(FILE);
    const env = Object.fromEntries(
      Object.entries(services.backup?.environment ?? {}).map(([k, v]) => [k, v ?? '']),
    );
    expect(readEnv(env).errors).toEqual([]);
    // The commented-out S3 and webhook settings: a typo there would only surface when a user enables it.
    const text = await readFile(new URL(`../../${FILE}`, import.meta.url), 'utf8');
    const commented = [...text.matchAll(/^\s*#\s*((?:BACKUP|AWS)_[A-Z0-9_]+):/gm)].map((m) => m[1] as string);
    expect(commented.length).toBeGreaterThanOrEqual(8);
    for (const name of commented) expect(KNOWN_VARS, name).toContain(name);
  });

  it('uses only labels the sidecar accepts, the commented-out ones included', async () => {
    const { services } = await composeConfig(FILE);
    for (const [name, s] of Object.entries(services))
      expect(labelProblems({ name, labels: s.labels ?? {} }), name).toEqual([]);
    const text = await readFile(new URL(`../../${FILE}`, import.meta.url), 'utf8');
    const commented = [
      ...text.matchAll(/^\s*#\s*((?:moodle-backup|docker-volume-backup)\.[a-z.-]+): "(.*)"$/gm),
    ];
    expect(commented.map((m) => m[1])).toContain('moodle-backup.schedule');
    for (const [, label, value] of commented)
      expect(
        labelProblems({ name: 'comment', labels: { [label as string]: value as string } }),
        label,
      ).toEqual([]);
  });
});

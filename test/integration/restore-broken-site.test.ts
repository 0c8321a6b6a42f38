import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Manifest } from '../../src/archive/manifest.js';
import { logLines, runCli } from '../harness/cli.js';
import { cliEnv, type TempDirs, tempDirs } from '../harness/config.js';
import { docker, execOk } from '../harness/docker.js';
import {
  type DbFingerprint,
  fingerprintDb,
  fingerprintVolume,
  type VolumeFingerprint,
} from '../harness/fingerprint.js';
import { diffMinusExcludes, flagInVolume } from '../harness/moodle.js';
import { captureContainer } from '../harness/recreate.js';
import { createMoodleStack, DB, type MoodleStack } from '../harness/stack.js';

/**
 * Issue 15 part 5: a site so broken that its own code cannot run (Moodle's maintenance.php needs config.php
 * and the database) must still be restorable with `restore latest --yes`. One stack for all cases: each
 * breaks the site restored by the case before, from the same healthy snapshot.
 */
const FILE_VOLUMES = ['moodle_data', 'moodledata_data'] as const;
const CODE = '/bitnami/moodle';

interface SiteState {
  files: Record<string, VolumeFingerprint>;
  db: DbFingerprint;
}

async function siteState(stack: MoodleStack): Promise<SiteState> {
  const files: Record<string, VolumeFingerprint> = {};
  for (const v of FILE_VOLUMES) files[v] = await fingerprintVolume(stack.volumes[v]);
  return { files, db: await fingerprintDb(stack.sql, DB.name) };
}

/** The entries of one archive of a snapshot, read with plain zstd and tar. */
function archiveEntries(dirs: TempDirs, m: Manifest, volume: string): string[] {
  const file = join(dirs.archive, m.id, m.volumes.find((v) => v.name === volume)?.file as string);
  const out = execFileSync('sh', ['-c', 'zstd -dc "$1" | tar -t', 'list', file], { maxBuffer: 64 << 20 });
  return out.toString().split('\n').filter(Boolean);
}

/** What a compose file with `restart: always` and an entrypoint that checks config.php on start (as Bitnami's
 * setup does) gives once a bad deploy broke config.php: the container exits at once and Docker restarts it. */
async function crashLoop(stack: MoodleStack): Promise<void> {
  const d = docker();
  const name = stack.containers.moodle;
  await execOk(name, ['sh', '-c', `echo 'this is not php;' >> ${CODE}/config.php`]);
  const spec = await captureContainer(name);
  await d.getContainer(name).remove({ force: true });
  const c = await d.createContainer({
    ...spec,
    Entrypoint: [
      '/usr/bin/tini',
      '--',
      'sh',
      '-c',
      `php -l ${CODE}/config.php >/dev/null || exit 1; exec /usr/local/bin/moodle-entrypoint.sh`,
    ],
    HostConfig: { ...spec.HostConfig, RestartPolicy: { Name: 'always' } },
  });
  await c.start();
  const end = Date.now() + 30_000;
  for (;;) {
    const s = (await c.inspect()).State;
    if (s.Restarting || (!s.Running && s.ExitCode !== 0)) return;
    if (Date.now() > end) throw new Error(`${name} did not crash-loop: ${s.Status}`);
    await sleep(200);
  }
}

interface Breakage {
  name: string;
  breakSite(stack: MoodleStack): Promise<unknown>;
  /** What the safety snapshot must hold of the broken state. */
  inSafety(entries: (volume: string) => string[]): void;
}

const BREAKAGES: Breakage[] = [
  {
    name: 'config.php deleted',
    breakSite: (s) => execOk(s.containers.moodle, ['rm', `${CODE}/config.php`]),
    inSafety: (e) => {
      expect(e('moodle_data')).toContain('./version.php');
      expect(e('moodle_data')).not.toContain('./config.php');
    },
  },
  {
    name: "Moodle's database dropped",
    breakSite: (s) =>
      execOk(s.containers.mariadb, [
        'mariadb',
        '-uroot',
        `-p${DB.rootPassword}`,
        '-e',
        `DROP DATABASE ${DB.name}`,
      ]),
    inSafety: (e) => {
      const db = e('mariadb_data');
      expect(db).toContain('./data/mysql/');
      expect(db.filter((p) => p.startsWith(`./data/${DB.name}/`))).toEqual([]);
    },
  },
  {
    name: 'the code volume emptied',
    breakSite: (s) => execOk(s.containers.moodle, ['find', CODE, '-mindepth', '1', '-delete']),
    inSafety: (e) => expect(e('moodle_data')).toEqual(['./']),
  },
  {
    name: 'the Moodle container crash-looping',
    breakSite: crashLoop,
    inSafety: (e) => expect(e('moodle_data')).toContain('./config.php'),
  },
];

describe('restore of a broken site (restore latest --yes through the CLI)', () => {
  let stack: MoodleStack;
  let dirs: TempDirs;
  let env: NodeJS.ProcessEnv;
  let healthy: SiteState;
  let snapshot: Manifest;

  beforeAll(async () => {
    [stack, dirs] = await Promise.all([createMoodleStack(), tempDirs('broken')]);
    env = cliEnv(stack.project, dirs);
    healthy = await siteState(stack);
    const r = await runCli(['backup', '--json'], env, { timeoutMs: 170_000 });
    expect(r.code, r.stderr).toBe(0);
    snapshot = JSON.parse(r.stdout) as Manifest;
  });
  afterAll(async () => {
    await stack?.remove();
    await dirs?.remove();
  });

  for (const b of BREAKAGES) {
    it(`${b.name}: exit 0, the snapshot's data back, site running, safety snapshot of the broken state`, {
      timeout: 300_000,
    }, async () => {
      await b.breakSite(stack);
      const r = await runCli(['restore', 'latest', '--yes'], env, { timeoutMs: 280_000 });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain(`restored ${snapshot.id}`);
      const lines = logLines(r.stderr);

      expect(await stack.states()).toEqual({ mariadb: 'running', moodle: 'running' });
      await stack.waitForDb();
      const now = await siteState(stack);
      for (const v of FILE_VOLUMES)
        expect(
          diffMinusExcludes(healthy.files[v] as VolumeFingerprint, now.files[v] as VolumeFingerprint),
          v,
        ).toEqual([]);
      expect(now.db).toEqual(healthy.db);
      expect(await flagInVolume(stack.volumes.moodledata_data)).toBe(false);
      // The restored site's own code works again.
      await execOk(stack.containers.moodle, ['php', `${CODE}/admin/cli/upgrade.php`, '--is-pending']);

      const safetyId = lines.find((l) => l.step === 'safety')?.snapshot as string;
      expect(safetyId).toMatch(/^\d{8}T\d{6}Z-/);
      const list = await runCli(['snapshots', '--json'], env, { timeoutMs: 60_000 });
      expect(list.code, list.stderr).toBe(0);
      const listed = (JSON.parse(list.stdout) as { id: string; status: string; kind: string }[]).find(
        (s) => s.id === safetyId,
      );
      expect([listed?.status, listed?.kind]).toEqual(['ok', 'pre-restore']);
      const safety = JSON.parse(
        await readFile(join(dirs.archive, safetyId, 'manifest.json'), 'utf8'),
      ) as Manifest;
      expect(safety.mode).toBe('stop');
      b.inSafety((v) => archiveEntries(dirs, safety, v));

      // One warning says that the site was stopped instead of put in maintenance mode, and why; no error.
      const fallback = lines.filter((l) => Number(l.level) === 40 && /stopped instead/.test(String(l.msg)));
      expect(fallback.map((l) => l.msg)).toHaveLength(1);
      expect(lines.filter((l) => Number(l.level) >= 50).map((l) => l.msg)).toEqual([]);
    });
  }
});

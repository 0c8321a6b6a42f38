import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBackup } from '../../src/backup/run.js';
import type { BackupMode, Config } from '../../src/config/types.js';
import { runRestore } from '../../src/restore/run.js';
import { createBackend } from '../../src/storage/index.js';
import { type TempDirs, tempDirs, testConfig } from '../harness/config.js';
import { docker, execIn, execOk } from '../harness/docker.js';
import {
  diffFingerprints,
  fingerprintDb,
  fingerprintVolume,
  type VolumeFingerprint,
} from '../harness/fingerprint.js';
import { createLayoutStack, isExcluded, LAYOUTS, type LayoutStack } from '../harness/layouts.js';
import { capturingLogger } from '../harness/moodle.js';
import { DB } from '../harness/stack.js';

/** Where the pre hook (run once maintenance mode is on, before anything stops) writes what it saw. */
const SEEN = '/tmp/flag-seen';
const DEFAULTS = [
  'cache/',
  'localcache/',
  'temp/',
  'sessions/',
  'lock/',
  'moodle-cron.log',
  'climaintenance.html',
];

function minus(fp: VolumeFingerprint, subpath: string | null): VolumeFingerprint {
  return { entries: fp.entries.filter((e) => subpath === null || !isExcluded(e.path, subpath)), digest: '' };
}

/**
 * Every layout a Moodle site is found in (test/harness/layouts.ts: Bitnami, moodlehq/moodle-php-apache with
 * bind-mounted code, code baked into the image, Moodle 5.1's public/), with no configuration: backup in each
 * mode, wreck, restore, everything back; maintenance mode on during the backup, Moodle's files written as the
 * web server's user.
 */
describe.each(LAYOUTS)('Moodle layout $name', (layout) => {
  let stack: LayoutStack;
  let dirs: TempDirs;
  const config = (mode: BackupMode): Config => testConfig(stack.project, dirs, { mode });
  const t0 = Date.now();

  beforeAll(async () => {
    dirs = await tempDirs(`layout-${layout.name}`);
    // The hook records the maintenance flag's owner: proof it was there, written as the web server's user.
    const hook = `stat -c %u "${layout.dataroot}/climaintenance.html" >> ${SEEN}`;
    // moodle-docker's code checkout on the host (bind-mounted layouts only).
    const code = join(dirs.root, 'code');
    await mkdir(code);
    stack = await createLayoutStack(layout, { 'moodle-backup.pre': hook }, code);
  }, 180_000);
  afterAll(async () => {
    await stack?.remove();
    await dirs?.remove();
    console.log(`layout ${layout.name}: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  });

  /** The Moodle service's volumes as listed by an independent `find` (test/harness/fingerprint.ts). */
  async function files(): Promise<Record<string, VolumeFingerprint>> {
    const out: Record<string, VolumeFingerprint> = {};
    for (const short of Object.keys(layout.volumes))
      out[short] = await fingerprintVolume(stack.volumes[short] as string);
    return out;
  }

  /** A volume's entries without what Moodle's excludes leave out of the dataroot. */
  const kept = (short: string, fp: VolumeFingerprint | undefined) =>
    minus(fp as VolumeFingerprint, short === layout.datarootVolume ? layout.subpath : null);

  it.each(['stop', 'pause', 'online'] as const)(
    '%s: found, maintenance on, restored whole',
    async (mode) => {
      await execOk(stack.containers.moodle, ['rm', '-f', SEEN], { user: 'root' });
      const { log, lines } = capturingLogger();
      const at = (re: RegExp) => Number(lines().find((l) => re.test(String(l.msg)))?.time);
      const backend = createBackend(config(mode).target);
      const m = await runBackup({ docker: docker(), config: config(mode), backend, log });

      // Found with no configuration, and said so: no warning about the site.
      expect(
        lines().filter((l) => l.level === 40 && l.step === 'plan' && !/crash-consistent/.test(String(l.msg))),
      ).toEqual([]);
      expect(m.site).toEqual({
        moodle: stack.containers.moodle,
        maintenance: true,
        moodleExcludes: true,
        dataroot: layout.dataroot,
        datarootVolume: stack.volumes[layout.datarootVolume],
        warnings: [],
      });
      expect(m.stack.moodle?.release).toBe(layout.release);
      const prefix = layout.subpath ? `${layout.subpath}/` : '';
      expect(m.volumes.find((v) => v.name === layout.datarootVolume)?.excluded).toEqual(
        DEFAULTS.map((r) => `${prefix}${r}`),
      );
      // Maintenance mode was on while the hook ran, and its flag belongs to the web server's user.
      const seen = await execOk(stack.containers.moodle, ['cat', SEEN]);
      expect(seen.trim()).toBe(String(layout.webUid));
      // What Moodle's CLI wrote during the run (cache directories) belongs to the web user; nothing to root.
      const before = await files();
      const inRoot = (before[layout.datarootVolume] as VolumeFingerprint).entries.filter(
        (e) => !layout.subpath || e.path.startsWith(`${layout.subpath}/`),
      );
      expect(inRoot.find((e) => e.path === `${prefix}cache`)).toMatchObject({
        type: 'd',
        uid: layout.webUid,
      });
      expect(inRoot.filter((e) => e.uid === 0).map((e) => e.path)).toEqual([]);
      expect(inRoot.some((e) => e.path === `${prefix}climaintenance.html`)).toBe(false);

      const dbBefore = await fingerprintDb(stack.sql, DB.name);
      // Wreck: rows, blobs, a junk file in every volume, and the site left in maintenance mode.
      await stack.sql("UPDATE mdl_user SET lastname='Vandal'; DELETE FROM mdl_course WHERE id > 10");
      await execOk(
        stack.containers.moodle,
        [
          'sh',
          '-c',
          `rm -rf "$1/filedir" && for d in "$@"; do echo junk > "$d/junk"; done && ${layout.php} ${layout.cli}/maintenance.php --enable`,
          'wreck',
          layout.dataroot,
          ...Object.values(layout.volumes),
        ],
        { user: 'root' },
      );
      const tr = Date.now();
      const restoreLog = capturingLogger();
      await runRestore({
        docker: docker(),
        config: config(mode),
        backend,
        log: restoreLog.log,
        snapshot: m.id,
        safetySnapshot: false,
      });
      // A slow restore on the shared machine: its timeline, to tell load from a hang.
      if (Date.now() - tr > 60_000)
        console.log(
          restoreLog.lines().map((l) => `${Number(l.time) - tr} ${String(l.step)} ${String(l.msg)}`),
        );
      await stack.waitForDb();
      // Figures for the report: each run's own timings (the machine is shared, compare ratios only).
      console.log(
        `${layout.name} ${mode}: backup ${m.timings.totalMs} ms (finding Moodle ${at(/^Moodle in /) - at(/^backup /)} ms), restore ${Date.now() - tr} ms`,
      );
      const after = await files();
      for (const short of Object.keys(layout.volumes))
        expect(diffFingerprints(kept(short, before[short]), kept(short, after[short])), short).toEqual([]);
      expect(await fingerprintDb(stack.sql, DB.name)).toEqual(dbBefore);
      expect(
        (await execIn(stack.containers.moodle, ['test', '-e', `${layout.dataroot}/climaintenance.html`]))
          .exitCode,
      ).toBe(1);
      const state = await docker().getContainer(stack.containers.moodle).inspect();
      expect(state.State.Running).toBe(true);
    },
    300_000,
  );
});

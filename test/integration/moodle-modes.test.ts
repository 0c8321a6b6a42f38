import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generateIdentity, identityToRecipient } from 'age-encryption';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Manifest } from '../../src/archive/manifest.js';
import { planMoodle } from '../../src/backup/moodle-plan.js';
import { runBackup } from '../../src/backup/run.js';
import type { BackupMode, Config } from '../../src/config/types.js';
import { silentLogger } from '../../src/observe/logger.js';
import { recoverInterrupted } from '../../src/recover/run.js';
import { runRestore } from '../../src/restore/run.js';
import { discoverStack } from '../../src/stack/discover.js';
import { StateStore } from '../../src/stack/state.js';
import { createBackend } from '../../src/storage/index.js';
import { runVerify } from '../../src/verify/run.js';
import { type TempDirs, tempDirs, testConfig } from '../harness/config.js';
import { docker, execIn, execOk } from '../harness/docker.js';
import { lifecycle, projectEvents } from '../harness/events.js';
import {
  type DbFingerprint,
  fingerprintDb,
  fingerprintVolume,
  type VolumeFingerprint,
} from '../harness/fingerprint.js';
import {
  capturingLogger,
  DATAROOT,
  diffMinusExcludes,
  dumpRunning,
  EXCLUDED_DIRS,
  EXCLUDED_FILES,
  FLAG,
  flagInVolume,
} from '../harness/moodle.js';
import { recreateWithLabels } from '../harness/recreate.js';
import { createMoodleStack, DB, type MoodleStack } from '../harness/stack.js';

const FILE_VOLUMES = ['moodle_data', 'moodledata_data'] as const;
/** Tables the online test's writer changes; everything else must come back bit for bit. */
const PIT = ['pit_a', 'pit_b'];
/** Downtime per mode on this stack, printed on every run (docs/design.md has the seeded-stack figures). */
const downtime: Record<string, { downtimeMs: number; maintenanceMs: number; totalMs: number }> = {};

async function files(stack: MoodleStack): Promise<Record<string, VolumeFingerprint>> {
  const out: Record<string, VolumeFingerprint> = {};
  for (const v of FILE_VOLUMES) out[v] = await fingerprintVolume(stack.volumes[v]);
  return out;
}

function withoutPit(db: DbFingerprint): DbFingerprint {
  return { tables: Object.fromEntries(Object.entries(db.tables).filter(([t]) => !PIT.includes(t))) };
}

/** Changes rows, files (also inside excluded directories) and leaves the site in maintenance mode. */
async function vandalise(stack: MoodleStack): Promise<void> {
  await stack.sql(
    "UPDATE mdl_user SET lastname='Vandal' WHERE id < 50; DELETE FROM mdl_course WHERE id > 200",
  );
  await execOk(stack.containers.moodle, [
    'bash',
    '-c',
    `cd ${DATAROOT} && echo junk > cache/junk && rm -rf trashdir && echo new > newfile && ` +
      `php /bitnami/moodle/admin/cli/maintenance.php --enable >/dev/null`,
  ]);
}

/** What a running site has in its caches: the excludes must leave all of it out (5 entries). */
async function fillCaches(stack: MoodleStack): Promise<void> {
  await execOk(stack.containers.moodle, [
    'bash',
    '-c',
    `cd ${DATAROOT} && echo c > cache/c.php && echo l > localcache/l && echo t > temp/t && echo s > sessions/sess_x && echo cron > moodle-cron.log && chown 1:1 cache/c.php localcache/l temp/t sessions/sess_x moodle-cron.log`,
  ]);
}

/** Entries the Moodle defaults leave out, counted from an independent listing of the volume. */
function excludedCount(fp: VolumeFingerprint | undefined): number {
  return (fp?.entries ?? []).filter(
    (e) => EXCLUDED_FILES.includes(e.path) || EXCLUDED_DIRS.some((d) => e.path.startsWith(`${d}/`)),
  ).length;
}

/** The excluded directories exist after a restore, empty, with the owner and mode they had. */
async function expectExcludedDirsEmpty(stack: MoodleStack, before: VolumeFingerprint): Promise<void> {
  const after = await fingerprintVolume(stack.volumes.moodledata_data);
  for (const d of EXCLUDED_DIRS) {
    const was = before.entries.find((e) => e.path === d);
    const now = after.entries.find((e) => e.path === d);
    expect(now, d).toMatchObject({ type: 'd', uid: was?.uid, gid: was?.gid, mode: was?.mode });
    expect(after.entries.filter((e) => e.path.startsWith(`${d}/`)).map((e) => e.path)).toEqual([]);
  }
  expect(after.entries.some((e) => e.path === 'moodle-cron.log')).toBe(false);
}

describe('Moodle-aware modes: stop, pause and online (encrypted) round-trip the seeded stack', () => {
  let stack: MoodleStack;
  let dirs: TempDirs;
  let config: (mode: BackupMode) => Config;

  beforeAll(async () => {
    [stack, dirs] = await Promise.all([createMoodleStack(), tempDirs('modes')]);
    // The online run is also encrypted (age): the dump goes through the same stages as the archives.
    const identity = await generateIdentity();
    const encryption = { recipients: [await identityToRecipient(identity)], identities: [identity] };
    config = (mode) => testConfig(stack.project, dirs, mode === 'online' ? { mode, encryption } : { mode });
    // The online test's two tables (written together in one transaction) and a bulk table that makes the
    // dump take long enough to be watched.
    await stack.sql(
      'CREATE TABLE pit_a (id INT PRIMARY KEY) ENGINE=InnoDB; CREATE TABLE pit_b (id INT PRIMARY KEY) ENGINE=InnoDB; ' +
        'CREATE TABLE bulk (id INT PRIMARY KEY, pad VARCHAR(255)) ENGINE=InnoDB; ' +
        'INSERT INTO bulk SELECT seq, REPEAT(MD5(seq), 6) FROM seq_1_to_250000',
    );
  });
  afterAll(async () => {
    console.log(`downtime per mode (seeded stack + 250 000-row bulk table): ${JSON.stringify(downtime)}`);
    await stack?.remove();
    await dirs?.remove();
  });

  for (const mode of ['stop', 'pause'] as const) {
    it(`${mode}: maintenance mode around the quiesce, excludes listed, restore gives back every byte and row`, async () => {
      await fillCaches(stack);
      const filesBefore = await files(stack);
      const dbBefore = await fingerprintDb(stack.sql, DB.name);
      const since = Date.now();
      const { log, lines } = capturingLogger();
      const backend = createBackend(config(mode).target);
      const m = await runBackup({ docker: docker(), config: config(mode), backend, log });
      downtime[mode] = {
        downtimeMs: m.timings.downtimeMs,
        maintenanceMs: m.timings.maintenanceMs ?? 0,
        totalMs: m.timings.totalMs,
      };

      expect(m.mode).toBe(mode);
      const events = lifecycle(await projectEvents(stack.project, since)).filter(
        (e) => !e.startsWith('die') && !e.startsWith('kill'),
      );
      expect(events).toEqual(
        mode === 'stop'
          ? ['stop moodle', 'stop mariadb', 'start mariadb', 'start moodle']
          : ['pause moodle', 'pause mariadb', 'unpause mariadb', 'unpause moodle'],
      );
      // Maintenance on before anything is quiesced, off after everything is back.
      const steps = lines().map((l) => `${String(l.step)} ${String(l.msg)}`);
      const at = (p: string) => steps.findIndex((s) => s.startsWith(p));
      expect(at('maintenance maintenance mode on')).toBeGreaterThanOrEqual(0);
      expect(at('maintenance maintenance mode on')).toBeLessThan(at('quiesce'));
      expect(at('maintenance maintenance mode off')).toBeGreaterThan(at('resumed'));
      if (mode === 'pause') expect(steps.some((s) => /crash-consistent/.test(s))).toBe(true);
      expect(await flagInVolume(stack.volumes.moodledata_data)).toBe(false);
      expect(m.timings.maintenanceMs).toBeGreaterThanOrEqual(m.timings.downtimeMs);

      expect(m.stack.moodle).toEqual({ version: '2024100700.00', release: '4.5 (Build: 20241007)' });
      expect(m.stack.mariadb?.version).toMatch(/^10\.11\.\d+-MariaDB/);
      const data = m.volumes.find((v) => v.name === 'moodledata_data');
      // The documented defaults (the harness's list, not the code's), in their order.
      expect(data?.excluded).toEqual([...EXCLUDED_DIRS.map((d) => `${d}/`), ...EXCLUDED_FILES]);
      // Everything below the excluded directories, the excluded files, and the maintenance flag of the run.
      expect(data?.excludedEntries).toBe(excludedCount(filesBefore.moodledata_data) + 1);
      expect(m.volumes.find((v) => v.name === 'moodle_data')?.excluded).toEqual([]);
      expect(m.database ?? null).toBeNull();

      await vandalise(stack);
      if (mode === 'pause') {
        // A snapshot from newer software than what runs now: the restore warns (and goes on).
        const file = join(dirs.archive, m.id, 'manifest.json');
        const json = JSON.parse(await readFile(file, 'utf8')) as Manifest;
        json.stack.mariadb = { version: '99.1.0-MariaDB' };
        json.stack.moodle = { version: '2099010100.00', release: '9.9 (Build: 20990101)' };
        await writeFile(file, JSON.stringify(json));
      }
      const restoreLog = capturingLogger();
      await runRestore({
        docker: docker(),
        config: config(mode),
        backend,
        log: restoreLog.log,
        snapshot: m.id,
        safetySnapshot: false,
      });
      const warned = restoreLog
        .lines()
        .filter((l) => l.step === 'check' && l.level === 40)
        .map((l) => String(l.msg));
      expect(warned.filter((w) => /older than the snapshot/.test(w))).toEqual(
        mode === 'pause'
          ? [
              expect.stringContaining('running Moodle (4.5 (Build: 20241007)) is older'),
              expect.stringMatching(
                /running MariaDB \(10\.11\.\d+-MariaDB\S*\) is older than the snapshot's \(99\.1\.0/,
              ),
            ]
          : [],
      );
      expect(await stack.states()).toEqual({ mariadb: 'running', moodle: 'running' });
      await stack.waitForDb();
      const filesAfter = await files(stack);
      for (const v of FILE_VOLUMES)
        expect(
          diffMinusExcludes(filesBefore[v] as VolumeFingerprint, filesAfter[v] as VolumeFingerprint),
          v,
        ).toEqual([]);
      expect(await fingerprintDb(stack.sql, DB.name)).toEqual(dbBefore);
      await expectExcludedDirsEmpty(stack, filesBefore.moodledata_data as VolumeFingerprint);
      expect((await stack.exec('moodle', ['test', '-e', `${DATAROOT}/${FLAG}`])).exitCode).toBe(1);
    }, 240_000);
  }

  it('online: nothing stops, a writer keeps committing, the dump is one point in time, maintenance only while it runs', async () => {
    await fillCaches(stack);
    const filesBefore = await files(stack);
    await execOk(stack.containers.moodle, ['rm', '-f', '/tmp/stop-writer']);
    const dbBefore = withoutPit(await fingerprintDb(stack.sql, DB.name));
    // The writer: one transaction per id, the same id into both tables; bounded by count and a stop file.
    const writer = execIn(stack.containers.mariadb, [
      'bash',
      '-c',
      'for i in $(seq 1 30000); do [ -e /tmp/stop-writer ] && break; ' +
        'echo "START TRANSACTION; INSERT INTO pit_a VALUES ($i); INSERT INTO pit_b VALUES ($i); COMMIT; DO SLEEP(0.002);"; ' +
        `done | mariadb -uroot -p${DB.rootPassword} ${DB.name}`,
    ]);
    for (let i = 0; i < 100 && Number(await stack.sql('SELECT COUNT(*) FROM pit_a')) < 20; i++)
      await new Promise((r) => setTimeout(r, 100));
    const rowsAtStart = Number(await stack.sql('SELECT COUNT(*) FROM pit_a'));
    expect(rowsAtStart).toBeGreaterThanOrEqual(20);

    // Sampler: dump running at t1 and t3 means maintenance must be on at t2 in between.
    let sampling = true;
    const samples: { during: boolean; flag: boolean }[] = [];
    const sampler = (async () => {
      for (let i = 0; i < 2000 && sampling; i++) {
        const d1 = await dumpRunning(stack);
        const flag = (await stack.exec('moodle', ['test', '-e', `${DATAROOT}/${FLAG}`])).exitCode === 0;
        const d3 = await dumpRunning(stack);
        samples.push({ during: d1 && d3, flag });
      }
    })();
    const since = Date.now();
    const backend = createBackend(config('online').target);
    let m: Manifest;
    try {
      m = await runBackup({ docker: docker(), config: config('online'), backend, log: silentLogger() });
    } finally {
      sampling = false;
      await sampler;
      await execOk(stack.containers.mariadb, ['touch', '/tmp/stop-writer']);
      await writer;
    }
    downtime.online = {
      downtimeMs: m.timings.downtimeMs,
      maintenanceMs: m.timings.maintenanceMs ?? 0,
      totalMs: m.timings.totalMs,
    };
    const rowsAtEnd = Number(await stack.sql('SELECT COUNT(*) FROM pit_a'));

    // No container was stopped, paused, killed or restarted.
    expect(lifecycle(await projectEvents(stack.project, since))).toEqual([]);
    expect(samples.filter((s) => s.during).length, 'the sampler saw the dump running').toBeGreaterThan(0);
    expect(samples.filter((s) => s.during && !s.flag)).toEqual([]);
    expect(await flagInVolume(stack.volumes.moodledata_data)).toBe(false);

    expect(m.mode).toBe('online');
    expect(m.database?.file).toBe('mariadb.sql.zst.age');
    expect(m.encryption?.keyType).toBe('recipients');
    const stored = await readFile(join(dirs.archive, m.id, 'mariadb.sql.zst.age'));
    expect(stored.subarray(0, 21).toString()).toBe('age-encryption.org/v1');
    expect(stored.includes(Buffer.from('INSERT INTO'))).toBe(false);
    expect(m.database?.volume.name).toBe('mariadb_data');
    expect(m.database?.options).toEqual(
      expect.arrayContaining(['--single-transaction', '--routines', '--events', '--triggers']),
    );
    expect(m.volumes.map((v) => v.name).sort()).toEqual(['moodle_data', 'moodledata_data']);
    // Read after maintenance was turned off: the flag is no longer there.
    expect(m.volumes.find((v) => v.name === 'moodledata_data')?.excludedEntries).toBe(
      excludedCount(filesBefore.moodledata_data),
    );
    // The writer ran before, during and after the dump: the dump holds a point strictly in between.
    const atDump = m.database?.tables[`${DB.name}.pit_a`] ?? -1;
    expect(atDump).toBeGreaterThan(rowsAtStart);
    expect(atDump).toBeLessThan(rowsAtEnd);
    expect(m.database?.tables[`${DB.name}.pit_b`]).toBe(atDump);

    await vandalise(stack);
    await runRestore({
      docker: docker(),
      config: config('online'),
      backend,
      log: silentLogger(),
      snapshot: m.id,
      safetySnapshot: false,
    });
    expect(await stack.states()).toEqual({ mariadb: 'running', moodle: 'running' });
    await stack.waitForDb();
    // One point in time: both tables hold exactly ids 1..N, N as the dump recorded.
    const q = await stack.sql(
      'SELECT COUNT(*), MAX(id) FROM pit_a; SELECT COUNT(*), MAX(id) FROM pit_b; SELECT COUNT(*) FROM pit_a JOIN pit_b USING (id)',
    );
    expect(q.trim().split('\n')).toEqual([`${atDump}\t${atDump}`, `${atDump}\t${atDump}`, `${atDump}`]);
    expect(withoutPit(await fingerprintDb(stack.sql, DB.name))).toEqual(dbBefore);
    const filesAfter = await files(stack);
    for (const v of FILE_VOLUMES)
      expect(
        diffMinusExcludes(filesBefore[v] as VolumeFingerprint, filesAfter[v] as VolumeFingerprint),
        v,
      ).toEqual([]);
    await expectExcludedDirsEmpty(stack, filesBefore.moodledata_data as VolumeFingerprint);
    expect((await stack.exec('moodle', ['test', '-e', `${DATAROOT}/${FLAG}`])).exitCode).toBe(1);
    expect(
      (await stack.exec('moodle', ['php', '/bitnami/moodle/admin/cli/upgrade.php', '--is-pending'])).exitCode,
    ).toBe(0);

    // `verify` checks the dump too (size, sha256, rows per table); `--deep` loads it into a scratch server
    // of the snapshot's image and runs mariadb-check. A manifest that disagrees with the dump is noticed.
    const ok = await runVerify({
      docker: docker(),
      config: config('online'),
      backend,
      log: silentLogger(),
      snapshot: m.id,
      deep: true,
    });
    expect(ok.results.map((r) => [r.volume, r.level, r.ok]).sort()).toEqual([
      ['mariadb_data', 'archive', true],
      ['mariadb_data', 'drill', true],
      ['moodle_data', 'archive', true],
      ['moodle_data', 'drill', true],
      ['moodledata_data', 'archive', true],
      // Its Moodle files are in the store: the blob list and every pack they need are checked.
      ['moodledata_data', 'blobs', true],
      ['moodledata_data', 'drill', true],
    ]);
    const dumpChecks = ok.results.filter((r) => r.volume === 'mariadb_data').map((r) => r.detail);
    expect(dumpChecks[0]).toContain('rows as in the manifest');
    expect(dumpChecks[1]).toMatch(/mariadb-check: \d+ tables OK/);
    const file = join(dirs.archive, m.id, 'manifest.json');
    const json = JSON.parse(await readFile(file, 'utf8')) as Manifest;
    if (json.database) json.database.tables[`${DB.name}.pit_a`] = atDump + 1;
    await writeFile(file, JSON.stringify(json));
    const bad = await runVerify({
      docker: docker(),
      config: config('online'),
      backend,
      log: silentLogger(),
      snapshot: m.id,
    });
    expect(bad.ok).toBe(false);
    expect(bad.results.find((r) => r.volume === 'mariadb_data')?.detail).toContain(
      `${DB.name}.pit_a: ${atDump + 1} expected, ${atDump}`,
    );
  }, 300_000);

  it('a Moodle container recreated while maintenance was on: recovery turns it off in the new container', async () => {
    const state = new StateStore(dirs.state);
    await state.write({
      runId: 'r',
      operation: 'backup',
      startedAt: new Date().toISOString(),
      pid: process.pid,
      quiesced: [],
    });
    const d = docker();
    const { log } = capturingLogger();
    const found = await planMoodle(
      d,
      await discoverStack(d, { project: stack.project, volumes: [] }, null),
      config('stop'),
      state,
      log,
    );
    await found.maintenance.on();
    expect(await flagInVolume(stack.volumes.moodledata_data)).toBe(true);
    const before = (await d.getContainer(stack.containers.moodle).inspect()).Id;
    // What `docker compose up -d` does to a changed service while a run holds maintenance mode.
    const recreated = await recreateWithLabels(stack.containers.moodle, {});
    expect(recreated.Id).not.toBe(before);
    expect(await flagInVolume(stack.volumes.moodledata_data)).toBe(true);

    const rec = capturingLogger();
    await recoverInterrupted(d, state, rec.log);
    expect(rec.lines().some((l) => /turned off the maintenance mode/.test(String(l.msg)))).toBe(true);
    expect(await flagInVolume(stack.volumes.moodledata_data)).toBe(false);
    expect(await state.read()).toBeNull();
  });
});

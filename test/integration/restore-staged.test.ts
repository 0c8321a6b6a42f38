import { copyFile, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Manifest } from '../../src/archive/manifest.js';
import { runBackup } from '../../src/backup/run.js';
import type { SidecarError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/observe/logger.js';
import { runRestore } from '../../src/restore/run.js';
import { createBackend } from '../../src/storage/index.js';
import { STAGING } from '../../src/volume/swap.js';
import { type TempDirs, tempDirs, testConfig } from '../harness/config.js';
import { docker, execOk } from '../harness/docker.js';
import { lifecycle, projectEvents } from '../harness/events.js';
import {
  diffFingerprints,
  fingerprintDb,
  fingerprintVolume,
  type VolumeFingerprint,
} from '../harness/fingerprint.js';
import { readState } from '../harness/live.js';
import { diffMinusExcludes } from '../harness/moodle.js';
import { makeTar, zstd } from '../harness/snapshot-tamper.js';
import { createMoodleStack, DB, type MoodleStack } from '../harness/stack.js';

/**
 * The mount write path unpacks into a staging directory inside the volume and swaps it in only once the
 * archive checked out whole (volume/swap.ts). These cases make the extraction itself fail, after
 * verification passed, by replacing the stored archive in the confirmation step: the volume must keep its
 * old bytes (the mount point's times included) and nothing of the staging may be left.
 */
describe('staged restore (mount path): a failing extract leaves the old data', () => {
  let stack: MoodleStack;
  let dirs: TempDirs;
  let older: Manifest;
  let atOlder: VolumeFingerprint;
  let snap: Manifest;
  const volume = 'moodledata_data';
  const archive = (m: Manifest) =>
    join(dirs.archive, m.id, m.volumes.find((v) => v.name === volume)?.file as string);

  beforeAll(async () => {
    [stack, dirs] = await Promise.all([createMoodleStack(), tempDirs('staged')]);
    const config = testConfig(stack.project, dirs);
    const backend = createBackend(config.target);
    older = await runBackup({ docker: docker(), config, backend, log: silentLogger() });
    atOlder = await fingerprintVolume(stack.volumes[volume]);
    await execOk(stack.containers.moodle, ['sh', '-c', 'echo v2 > /bitnami/moodledata/marker']);
    snap = await runBackup({ docker: docker(), config, backend, log: silentLogger() });
    await copyFile(archive(snap), join(dirs.root, 'pristine'));
  });
  afterAll(async () => {
    await stack?.remove();
    await dirs?.remove();
  });

  /** The snapshot's archive of the dataroot with one byte flipped: the unpack's checks must catch it. */
  async function damageSnapshot(): Promise<void> {
    const damaged = await readFile(join(dirs.root, 'pristine'));
    damaged[damaged.length >> 1] = (damaged[damaged.length >> 1] ?? 0) ^ 0xff;
    await writeFile(archive(snap), damaged);
  }

  /** A restore of the snapshot without a confirmation or safety snapshot (all volumes unless given); its error. */
  function unconfirmedRestore(volumes?: string[]): Promise<SidecarError | null> {
    const config = testConfig(stack.project, dirs);
    return runRestore({
      docker: docker(),
      config,
      backend: createBackend(config.target),
      log: silentLogger(),
      snapshot: snap.id,
      ...(volumes ? { volumes } : {}),
      safetySnapshot: false,
    }).then(
      () => null,
      (e: SidecarError) => e,
    );
  }

  async function restoreReplacing(stored: () => Promise<void>): Promise<SidecarError> {
    await copyFile(join(dirs.root, 'pristine'), archive(snap));
    // What the volume holds now, changed since the snapshot: this is what must survive.
    await execOk(stack.containers.moodle, [
      'sh',
      '-c',
      `echo now-${Date.now()} > /bitnami/moodledata/marker`,
    ]);
    const before = await fingerprintVolume(stack.volumes[volume]);
    const config = testConfig(stack.project, dirs);
    const err = await runRestore({
      docker: docker(),
      config,
      backend: createBackend(config.target),
      log: silentLogger(),
      snapshot: snap.id,
      volumes: [volume],
      safetySnapshot: false,
      confirm: async () => {
        await stored();
        return true;
      },
    }).then(
      () => null,
      (e: SidecarError) => e,
    );
    expect(err?.code).toBe('RESTORE_FAILED');
    expect(err?.message).toContain(`${volume}: untouched`);
    expect(await stack.states()).toEqual({ mariadb: 'running', moodle: 'running' });
    expect(diffFingerprints(before, await fingerprintVolume(stack.volumes[volume]))).toEqual([]);
    return err as SidecarError;
  }

  it('an archive replaced by another valid one: unpacked whole, then the sha256 re-check fails; old bytes stay', async () => {
    const err = await restoreReplacing(() => copyFile(archive(older), archive(snap)));
    expect(err.message).toMatch(/changed between verification and restore/);
  });

  it('an archive replaced by a hostile one: the in-line guard stops tar midway; old bytes stay', async () => {
    const tar = await makeTar([
      { name: './', type: 'directory', mode: 0o755 },
      { name: './ok.txt', body: 'fine\n', mode: 0o644 },
      { name: '../evil', body: 'x' },
    ]);
    const err = await restoreReplacing(() => writeFile(archive(snap), zstd(tar)));
    expect(err.message).toMatch(/HOSTILE|refused/);
  });

  it('without a confirmation or safety snapshot the archive is checked while it is unpacked, before anything stops: a damaged one stops nothing and leaves the old bytes', async () => {
    await damageSnapshot();
    await execOk(stack.containers.moodle, [
      'sh',
      '-c',
      `echo now-${Date.now()} > /bitnami/moodledata/marker`,
    ]);
    const before = await fingerprintVolume(stack.volumes[volume]);
    const t0 = Date.now();
    const err = await unconfirmedRestore([volume]);
    expect(err?.code).toBe('RESTORE_FAILED');
    expect(err?.message).toContain(`${volume}: untouched`);
    expect(lifecycle(await projectEvents(stack.project, t0))).toEqual([]);
    expect(await stack.states()).toEqual({ mariadb: 'running', moodle: 'running' });
    expect(diffFingerprints(before, await fingerprintVolume(stack.volumes[volume]))).toEqual([]);
    expect(await readState(dirs)).toBeNull();
  });

  it('every volume staged ahead, two at a time: one damaged archive discards the copies of the others too, stops nothing, and the database keeps its rows', async () => {
    await damageSnapshot();
    const before = await fingerprintVolume(stack.volumes[volume]);
    const code = await fingerprintVolume(stack.volumes.moodle_data);
    const db = await fingerprintDb(stack.sql, DB.name);
    const t0 = Date.now();
    const err = await unconfirmedRestore();
    expect(err?.code).toBe('RESTORE_FAILED');
    for (const v of ['mariadb_data', 'moodle_data', volume])
      expect(err?.message).toContain(`${v}: untouched`);
    expect(lifecycle(await projectEvents(stack.project, t0))).toEqual([]);
    expect(await stack.states()).toEqual({ mariadb: 'running', moodle: 'running' });
    expect(diffFingerprints(before, await fingerprintVolume(stack.volumes[volume]))).toEqual([]);
    expect(diffFingerprints(code, await fingerprintVolume(stack.volumes.moodle_data))).toEqual([]);
    expect(await fingerprintDb(stack.sql, DB.name)).toEqual(db);
    // No staging copy left in the database volume either (its other files are MariaDB's, changing as it runs).
    const top = await execOk(stack.containers.mariadb, ['ls', '-A', '/bitnami/mariadb']);
    expect(top.split('\n')).not.toContain(STAGING);
    expect(await readState(dirs)).toBeNull();
  });

  it('an intact archive is swapped in whole: the snapshot bytes, nothing of the staging left, state cleared', async () => {
    const config = testConfig(stack.project, dirs);
    const r = await runRestore({
      docker: docker(),
      config,
      backend: createBackend(config.target),
      log: silentLogger(),
      snapshot: older.id,
      volumes: [volume],
      safetySnapshot: false,
    });
    expect(r.applied).toBe(true);
    expect(await stack.states()).toEqual({ mariadb: 'running', moodle: 'running' });
    expect(diffMinusExcludes(atOlder, await fingerprintVolume(stack.volumes[volume]))).toEqual([]);
    expect(await readState(dirs)).toBeNull();
  });
});

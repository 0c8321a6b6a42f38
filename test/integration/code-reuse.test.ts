import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { generateIdentity, identityToRecipient } from 'age-encryption';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Manifest, ManifestVolume } from '../../src/archive/manifest.js';
import { runBackup } from '../../src/backup/run.js';
import type { Config } from '../../src/config/types.js';
import { silentLogger } from '../../src/observe/logger.js';
import { prune } from '../../src/prune/run.js';
import { runRestore } from '../../src/restore/run.js';
import { createBackend, type RetryingBackend } from '../../src/storage/index.js';
import { type TempDirs, tempDirs, testConfig } from '../harness/config.js';
import { docker, execOk } from '../harness/docker.js';
import { fingerprintVolume, type VolumeFingerprint } from '../harness/fingerprint.js';
import { KEEP_LAST_2 } from '../harness/retention.js';
import { createTestBucket, testS3Target } from '../harness/s3.js';
import { flipByte } from '../harness/snapshot-tamper.js';
import { createMoodleStack, type MoodleStack } from '../harness/stack.js';

const CODE = 'moodle_data';

/** A logger that keeps every message, so a test can read what the run said about each volume. */
function recordingLog() {
  const messages: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n').filter(Boolean))
        messages.push((JSON.parse(line) as { msg: string }).msg);
      cb();
    },
  });
  return { log: pino({ level: 'info' }, sink), messages };
}

function volume(m: Manifest, name: string): ManifestVolume {
  const v = m.volumes.find((x) => x.name === name);
  if (!v) throw new Error(`${m.id} has no volume ${name}`);
  return v;
}

/**
 * An unchanged code volume (Moodle's code between upgrades) reuses the newest snapshot's archive — a hard
 * link on a local target, a server-side copy on S3 — and each snapshot still restores on its own.
 */
describe('unchanged volumes reuse the previous archive', () => {
  let stack: MoodleStack;
  let dirs: TempDirs;
  const backends: RetryingBackend[] = [];

  beforeAll(async () => {
    stack = await createMoodleStack();
    dirs = await tempDirs('reuse');
    // A listing whose newest change is under 2 s old is not recorded (it could not vouch for a later one).
    await sleep(2_100);
  });
  afterAll(async () => {
    for (const b of backends) await b.close();
    await stack?.remove();
    await dirs?.remove();
  });

  const backup = async (config: Config) => {
    const backend = createBackend(config.target);
    backends.push(backend);
    const rec = recordingLog();
    const m = await runBackup({ docker: docker(), config, backend, log: rec.log });
    return { m, messages: rec.messages, backend };
  };
  /** The code volume damaged, then restored from `snapshot` alone: byte for byte what it was at `at`. */
  const restoresTo = async (
    config: Config,
    snapshot: { m: Manifest; backend: RetryingBackend },
    at: VolumeFingerprint,
  ) => {
    await execOk(stack.containers.moodle, ['sh', '-c', 'echo vandal > /bitnami/moodle/version.php']);
    await runRestore({
      docker: docker(),
      config,
      backend: snapshot.backend,
      log: silentLogger(),
      snapshot: snapshot.m.id,
      volumes: [CODE],
      safetySnapshot: false,
    });
    expect((await fingerprintVolume(stack.volumes[CODE])).digest).toBe(at.digest);
  };
  const local = (sub: string, over: Partial<Config> = {}) =>
    testConfig(stack.project, dirs, { target: { type: 'local', path: join(dirs.root, sub) }, ...over });

  it('links the archive of an unchanged volume; the second snapshot restores alone after the first is pruned', async () => {
    const config = local('a');
    const atBackup = await fingerprintVolume(stack.volumes[CODE]);
    const first = await backup(config);
    const second = await backup(config);
    const [a, b] = [volume(first.m, CODE), volume(second.m, CODE)];
    expect(a.fingerprint).toMatch(/^[0-9a-f]{64}$/);
    expect(a.reusedFrom).toBeUndefined();
    expect(b).toMatchObject({ fingerprint: a.fingerprint, reusedFrom: first.m.id, sha256: a.sha256 });
    expect(b.storedBytes).toBe(a.storedBytes);
    expect(second.messages).toContain(`${CODE}: unchanged since ${first.m.id}, archive reused (linked)`);
    const path = (m: Manifest, v: ManifestVolume) => join(dirs.root, 'a', m.id, v.file);
    const [sa, sb] = [await stat(path(first.m, a)), await stat(path(second.m, b))];
    expect(sb.ino).toBe(sa.ino);
    expect(sb.nlink).toBe(2);
    // The dataroot and the database are read every time: nothing to compare.
    for (const name of ['mariadb_data', 'moodledata_data'])
      expect(volume(second.m, name).reusedFrom, name).toBeUndefined();

    // Prune the first (keep the newest only): the second keeps its archive.
    const pruned = await prune(second.backend, { ...KEEP_LAST_2, keepLast: 1 }, { log: silentLogger() });
    expect(pruned.deleted).toContain(first.m.id);
    await expect(stat(path(first.m, a))).rejects.toMatchObject({ code: 'ENOENT' });
    await restoresTo(config, second, atBackup);
  });

  it('reads a volume again after one file is touched, and when reuse is off', async () => {
    await sleep(2_100); // the restore above just wrote every file
    const config = local('b');
    const first = await backup(config);
    await execOk(stack.containers.moodle, ['touch', '-c', '/bitnami/moodle/version.php']);
    const touched = await backup(config);
    const off = await backup({ ...config, reuseArchives: 'off' });
    const a = volume(first.m, CODE);
    const t = volume(touched.m, CODE);
    expect(a.fingerprint).toBeDefined();
    expect(t.reusedFrom).toBeUndefined();
    expect(t.fingerprint).not.toBe(a.fingerprint);
    expect(volume(off.m, CODE).reusedFrom).toBeUndefined();
    expect(volume(off.m, CODE).fingerprint).toBeUndefined();
    const ino = async (m: Manifest) => (await stat(join(dirs.root, 'b', m.id, volume(m, CODE).file))).ino;
    expect(await ino(touched.m)).not.toBe(await ino(first.m));
  });

  it('compresses afresh when the earlier local archive no longer matches its sha256', async () => {
    const first = await backup(local('d'));
    const a = volume(first.m, CODE);
    await flipByte(join(dirs.root, 'd', first.m.id, a.file));
    const second = await backup(local('d'));
    expect(volume(second.m, CODE).reusedFrom).toBeUndefined();
    expect(second.messages).toContain(
      `${first.m.id}/${a.file} does not match its manifest's sha256: not reused`,
    );
    // The fresh archive is what the manifest says (the damaged one is left to verify to report).
    expect(volume(second.m, CODE).sha256).toBe(a.sha256);
  });

  it('reuses an encrypted archive for the same recipients only', async () => {
    await sleep(2_100); // the touch above
    const [x, y] = await Promise.all([generateIdentity(), generateIdentity()]);
    const to = async (id: string) => ({ recipients: [await identityToRecipient(id)], identities: [] });
    const first = await backup(local('c', { encryption: await to(x) }));
    const same = await backup(local('c', { encryption: await to(x) }));
    const other = await backup(local('c', { encryption: await to(y) }));
    expect(volume(first.m, CODE).file).toBe(`${CODE}.tar.zst.age`);
    expect(volume(same.m, CODE).reusedFrom).toBe(first.m.id);
    expect(volume(other.m, CODE).reusedFrom).toBeUndefined();
    expect(volume(other.m, CODE).fingerprint).not.toBe(volume(first.m, CODE).fingerprint);
  });

  it('copies the archive inside the bucket on S3 (after the window), and the copy restores', async () => {
    const atBackup = await fingerprintVolume(stack.volumes[CODE]);
    const config = testConfig(stack.project, dirs, { target: testS3Target(await createTestBucket('reuse')) });
    const first = await backup(config);
    const second = await backup(config);
    const [a, b] = [volume(first.m, CODE), volume(second.m, CODE)];
    expect(b).toMatchObject({ reusedFrom: first.m.id, sha256: a.sha256, storedBytes: a.storedBytes });
    expect(second.messages).toContain(
      `${CODE}: unchanged since ${first.m.id}, archive reused (copied after the window)`,
    );
    expect((await second.backend.stat(`${second.m.id}/${b.file}`))?.size).toBe(a.storedBytes);
    // The first snapshot's copy is gone: the second's is an object of its own.
    await second.backend.delete(`${first.m.id}/${a.file}`);
    await restoresTo(config, second, atBackup);
  });
});

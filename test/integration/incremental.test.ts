import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { generateIdentity, identityToRecipient } from 'age-encryption';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it, onTestFinished } from 'vitest';
import { ageHeaderEnd } from '../../src/archive/age-stream.js';
import { getCodec } from '../../src/archive/codec.js';
import { storeDecrypter } from '../../src/archive/encryption.js';
import { FORMAT_STORE, type Manifest, type ManifestBlobs } from '../../src/archive/manifest.js';
import { SINCE_MARGIN_MS } from '../../src/backup/blob-window.js';
import { runBackup } from '../../src/backup/run.js';
import { loadConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import { silentLogger } from '../../src/observe/logger.js';
import { runRestore } from '../../src/restore/run.js';
import { createBackend } from '../../src/storage/index.js';
import { type DirEntry, formatBlobLine } from '../../src/store/blob-list.js';
import type { PackRecord } from '../../src/store/index-file.js';
import { packKey } from '../../src/store/layout.js';
import { snapshotBlobs } from '../../src/store/snapshot-blobs.js';
import { loadIndex } from '../../src/store/store-io.js';
import { runVerify } from '../../src/verify/run.js';
import { logLines, runCli } from '../harness/cli.js';
import { composeLabels } from '../harness/compose.js';
import { cliEnv, type TempDirs, tempDirs, testConfig } from '../harness/config.js';
import { docker, execOk, IMAGES, TEST_LABEL, uniqueName } from '../harness/docker.js';
import { fingerprintVolume, type VolumeFingerprint } from '../harness/fingerprint.js';
import { capturingLogger, diffMinusExcludes } from '../harness/moodle.js';
import { createTestBucket, s3Env, s3Host, testS3Target } from '../harness/s3.js';
import { addToArchive, copySnapshot, sha256, zstd } from '../harness/snapshot-tamper.js';
import { createMoodleStack, type MoodleStack } from '../harness/stack.js';

const DATAROOT = '/bitnami/moodledata';
const sha1 = (s: string) => createHash('sha1').update(s).digest('hex');
const at = (area: string, h: string) => `${area}/${h.slice(0, 2)}/${h.slice(2, 4)}/${h}`;
const dirOf = (path: string) => path.slice(0, path.lastIndexOf('/'));

/** Runs a shell script in the Moodle container, in the dataroot, as Moodle's user would leave files. */
async function inDataroot(stack: MoodleStack, script: string): Promise<string> {
  return execOk(stack.containers.moodle, ['bash', '-c', `set -euo pipefail; cd ${DATAROOT}; ${script}`]);
}

/**
 * A shell script in a throwaway container that sees every volume's directory (`/vols/<name>/_data`, found from
 * `volume`'s) under one mount, as a root shell on the engine's host does: a hard link between volumes works there.
 */
async function onVolumesDir(volume: string, script: string): Promise<void> {
  const { Mountpoint } = await docker().getVolume(volume).inspect();
  const c = await docker().createContainer({
    name: uniqueName('vols'),
    Image: IMAGES.base,
    Cmd: ['sh', '-c', `set -eu; ${script}`],
    Labels: { [TEST_LABEL]: inject('runId') },
    HostConfig: { Binds: [`${dirname(dirname(Mountpoint))}:/vols`], NetworkMode: 'none' },
  });
  try {
    await c.start();
    const r = (await c.wait()) as { StatusCode: number };
    if (r.StatusCode !== 0) throw new Error(`${script}: exit ${r.StatusCode}`);
  } finally {
    await c.remove({ force: true, v: true }).catch(() => undefined);
  }
}

/** Adds a Moodle file with content `text` under its SHA-1, as Moodle's file API does. */
function addBlob(text: string): string {
  const h = sha1(text);
  return `mkdir -p $(dirname ${at('filedir', h)}) && printf %s '${text}' > ${at('filedir', h)} && chown 1001:1001 ${at('filedir', h)}`;
}

function blobsOf(m: Manifest): ManifestBlobs {
  const v = m.volumes.find((x) => x.name === 'moodledata_data');
  expect(v?.blobs, 'moodledata_data keeps its blobs in the store').toBeDefined();
  return v?.blobs as ManifestBlobs;
}

describe('incremental backups (the blob store)', () => {
  let stack: MoodleStack;
  let dirs: TempDirs;
  let config: Config;
  const moodledata = () => fingerprintVolume(stack.volumes.moodledata_data);
  /** The state volume's kept-base pointers (backup/list-base-cache.ts), one a volume. */
  const basePointers = async () => {
    const files = await readdir(dirs.state, { recursive: true });
    const pointers = files.filter((f) => /bases\/[^/]+\.json$/.test(f)).sort();
    return Promise.all(pointers.map((f) => readFile(join(dirs.state, f), 'utf8')));
  };
  /** A snapshot's stored blob list (zstd, not encrypted), as text. */
  const listText = async (m: Manifest) =>
    execFileSync('zstd', ['-dc'], {
      input: await readFile(join(dirs.archive, m.id, blobsOf(m).file)),
      encoding: 'utf8',
    });
  /** `verify` of snapshot `id` (archives, blob list, packs present): every check passes. */
  const expectVerified = async (id: string) => {
    const report = await runVerify({
      docker: docker(),
      config,
      backend: createBackend(config.target),
      log: silentLogger(),
      snapshot: id,
    });
    expect(
      report.results.filter((r) => !r.ok),
      id,
    ).toEqual([]);
    return report;
  };
  /** Restores snapshot `id` with no safety snapshot, as the tests below compare the result themselves. */
  const restoreSnapshot = (id: string) =>
    runRestore({
      docker: docker(),
      config,
      backend: createBackend(config.target),
      log: silentLogger(),
      snapshot: id,
      safetySnapshot: false,
    });

  /**
   * Snapshot `m` with its dataroot as versions before 2026-12-07 wrote it in online mode (their window listed
   * every file): the leaf directories in the tarball, with the attributes `m`'s list gives them, and a whole
   * blob list without directory lines (format /2, `mbs-blobs 1`). A copy under a new id.
   */
  const asOlderSnapshot = async (m: Manifest): Promise<string> => {
    const copy = await copySnapshot(dirs.archive, m.id);
    const v = copy.volume('moodledata_data');
    const blobs = v.blobs as ManifestBlobs;
    const leaves: DirEntry[] = [];
    const lines = ['mbs-blobs 1\n'];
    const source = m.volumes.find((x) => x.name === 'moodledata_data') as Manifest['volumes'][number];
    for await (const b of snapshotBlobs(createBackend(config.target), m, source, undefined, (d) =>
      leaves.push(d),
    ))
      lines.push(formatBlobLine(b));
    expect(leaves.length).toBeGreaterThan(10);
    const list = zstd(Buffer.from(lines.join('')));
    await writeFile(join(copy.dir, blobs.file), list);
    const { base: _shared, ...whole } = blobs;
    v.blobs = { ...whole, sha256: sha256(list), storedBytes: list.length };
    v.fingerprint = undefined; // never reused by a later backup
    copy.manifest.format = FORMAT_STORE;
    await copy.save();
    await addToArchive(
      copy,
      'moodledata_data',
      leaves.map((d) => ({
        name: `./${d.path}/`,
        type: 'directory' as const,
        mode: d.mode,
        uid: d.uid,
        gid: d.gid,
        mtime: new Date(d.mtimeMs),
      })),
    );
    return copy.id;
  };

  beforeAll(async () => {
    stack = await createMoodleStack({ seed: { files: 60, blobKb: 16, bigMb: 1 } });
    dirs = await tempDirs('incremental');
    config = testConfig(stack.project, dirs);
  });
  afterAll(async () => {
    await stack?.remove();
    await dirs?.remove();
  });

  it('snapshots through adds, deletes, a move to trashdir and a corrupt file restore byte for byte; an unchanged run stores nothing', {
    timeout: 300_000,
  }, async () => {
    const backend = createBackend(config.target);
    let logs = capturingLogger();
    const backup = () => {
      logs = capturingLogger();
      return runBackup({ docker: docker(), config, backend, log: logs.log });
    };
    const said = () =>
      JSON.stringify(
        logs
          .lines()
          .filter((l) => ['store', 'read', 'plan'].includes(String(l.step)) || Number(l.level) >= 40),
      );
    const s1 = await backup();
    const fp1 = await moodledata();
    expect(s1.format, said()).toBe('moodle-backup-sidecar/3');
    const b1 = blobsOf(s1);
    expect(b1.count).toBeGreaterThanOrEqual(60);
    expect(b1.added).toBe(b1.count); // a first run stores every blob
    // Its list is a new shared base (store/lists/) and an empty difference naming it.
    expect(b1.base).toMatchObject({ count: b1.count, added: true });
    const base = b1.base as NonNullable<typeof b1.base>;
    expect((await backend.stat(`store/lists/${base.sha256.slice(0, 2)}/${base.sha256}`))?.size).toBe(
      base.storedBytes,
    );

    const s2 = await backup();
    expect(s2.format, said()).toBe('moodle-backup-sidecar/3');
    expect(blobsOf(s2)).toMatchObject({ count: b1.count, added: 0, addedBytes: 0, packBytes: 0 });
    // Nothing changed: the same base, no new one, and a list of a few bytes (the header and the base line).
    expect(blobsOf(s2).base).toEqual({ ...base, added: false });
    expect(blobsOf(s2).storedBytes).toBeLessThan(200);

    // Three new files, two deleted, one moved to trashdir as Moodle's file deletion does.
    const pool = (
      await inDataroot(stack, "find filedir -type f -name '????????????????????????????????????????' | sort")
    )
      .trim()
      .split('\n');
    const [gone1, gone2, moved] = pool.slice(-3) as [string, string, string];
    const movedTo = `trash${moved.slice('file'.length)}`;
    await inDataroot(
      stack,
      [
        addBlob('new file one'),
        addBlob('new file two'),
        addBlob('new file three'),
        `rm ${gone1} ${gone2}`,
        `mkdir -p $(dirname ${movedTo}) && mv ${moved} ${movedTo}`,
      ].join(' && '),
    );
    const s3 = await backup();
    const fp3 = await moodledata();
    expect(s3.format, said()).toBe('moodle-backup-sidecar/3');
    expect(blobsOf(s3)).toMatchObject({ count: b1.count + 1, added: 3 });
    expect(blobsOf(s3).base).toEqual({ ...base, added: false }); // the changes are the difference

    // A file whose content is not its name: Moodle's copy is corrupt. It is kept as it is, and reported.
    const claimed = sha1('what moodle wrote');
    await inDataroot(
      stack,
      `mkdir -p $(dirname ${at('filedir', claimed)}) && printf %s 'bit rot' > ${at('filedir', claimed)}`,
    );
    const s4 = await backup();
    const fp4 = await moodledata();
    expect(blobsOf(s4).mismatches).toEqual([
      { path: at('filedir', claimed), claimed, actual: sha1('bit rot') },
    ]);

    // Each snapshot comes back exactly, whatever the dataroot holds when it is restored.
    for (const [m, fp] of [
      [s1, fp1],
      [s4, fp4],
      [s3, fp3],
    ] as const) {
      const capture = capturingLogger();
      await runRestore({
        docker: docker(),
        config,
        backend,
        log: capture.log,
        snapshot: m.id,
        safetySnapshot: false,
      });
      expect(diffMinusExcludes(fp, await moodledata()), `restore of ${m.id}`).toEqual([]);
      const placed = capture.lines().find((l) => l.step === 'restore' && typeof l.reused === 'number');
      // Blobs the dataroot still had were reused, not fetched again: the leaf directories it holds as the
      // snapshot does stayed where they were, the others were swapped one by one.
      expect(placed?.reused).toBeGreaterThan(0);
      expect(placed?.keptLeaves).toBeGreaterThan(0);
      const swapped = capture.lines().find((l) => l.step === 'restore' && typeof l.out === 'number');
      expect(swapped?.rebuilt).toBe(0);
    }
  });

  it('a restore keeps leaf directories in place and looks again, stack stopped, at those Moodle changed after its first look', {
    timeout: 300_000,
  }, async () => {
    const backend = createBackend(config.target);
    // Each snapshot as this version writes it (the blob list names the leaf directories), and as versions
    // before 2026-12-07 wrote an online one (the tarball holds them; a whole list without directory lines).
    for (const leaves of ['in the tarball', 'in the blob list'] as const) {
      await sleep(SINCE_MARGIN_MS + 100); // older than a listing's racy margin
      const taken = await runBackup({ docker: docker(), config, backend, log: silentLogger() });
      const s = leaves === 'in the tarball' ? { id: await asOlderSnapshot(taken) } : taken;
      const fp = await moodledata();
      // Two leaf directories holding one plain file each (not the seed's hard link's, which the tarball holds).
      const plain = (
        await inDataroot(
          stack,
          'for d in filedir/*/*; do if [ "$(ls -A $d | wc -l)" = 1 ]; then find $d -maxdepth 1 -type f -links 1; fi; done | sort',
        )
      )
        .trim()
        .split('\n');
      expect(plain.length).toBeGreaterThan(10);
      const victim = plain[0] as string;
      const intruder = `${dirOf(plain[plain.length - 1] as string)}/${sha1('added while the restore staged')}`;
      // Right after the dataroot was staged beside the live one (stack still running), before the stop: one
      // file deleted from a leaf directory the restore meant to keep, one added to another.
      const chunks: string[] = [];
      let changed = false;
      const sink = new Writable({
        write(chunk: Buffer, _enc, cb) {
          const line = chunk.toString();
          chunks.push(line);
          if (!changed && line.includes('"step":"stage"') && line.includes('moodledata_data')) {
            changed = true;
            execFileSync('docker', [
              'exec',
              stack.containers.moodle,
              'sh',
              '-c',
              `cd ${DATAROOT} && rm ${victim} && printf x > ${intruder}`,
            ]);
          }
          cb();
        },
      });
      await runRestore({
        docker: docker(),
        config,
        backend,
        log: pino({ level: 'info', base: undefined }, sink),
        snapshot: s.id,
        safetySnapshot: false,
      });
      expect(changed, 'the dataroot was staged while the stack ran').toBe(true);
      expect(diffMinusExcludes(fp, await moodledata()), leaves).toEqual([]);
      const lines = chunks
        .join('')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      const placed = lines.find((l) => l.step === 'restore' && typeof l.reused === 'number');
      expect(placed?.keptLeaves, leaves).toBeGreaterThan(10);
      const swapped = lines.find((l) => l.step === 'restore' && typeof l.out === 'number');
      expect(swapped?.rebuilt, leaves).toBe(2);
    }

    // Nothing changed between two backups (each starts from the last listing): the
    // second writes the first one's difference from the base again from the state volume's copy, without a
    // diff. The kept pointer, which names that copy, stays as it was; the list reads back the same.
    await sleep(SINCE_MARGIN_MS + 100);
    const m1 = await runBackup({ docker: docker(), config, backend, log: silentLogger() });
    const kept = await basePointers();
    // m1's difference from the base is not empty (the restores above changed leaf directories): a diff of m2
    // would keep a delta file of its own, under a new name, in a new pointer.
    expect(kept.map((p) => JSON.parse(p).last)).toEqual([
      expect.objectContaining({ count: blobsOf(m1).count, delta: expect.stringMatching(/\.delta$/) }),
    ]);
    const m2 = await runBackup({ docker: docker(), config, backend, log: silentLogger() });
    expect(await basePointers()).toEqual(kept);
    expect(blobsOf(m2)).toMatchObject({ count: blobsOf(m1).count, added: 0, base: blobsOf(m1).base });
    expect(await listText(m2)).toBe(await listText(m1));
    const fp2 = await moodledata();
    await restoreSnapshot(m2.id);
    expect(diffMinusExcludes(fp2, await moodledata())).toEqual([]);
  });

  it('blobs hard-linked from another volume (a dataroot copied in with cp -al) go to the store; a restore gives their bytes', {
    timeout: 300_000,
  }, async () => {
    const backend = createBackend(config.target);
    // The seed's blob linked to a non-blob file of the same volume stays in the tarball (tar keeps that
    // link): gone here, so that only links leaving the volume are looked at.
    await inDataroot(stack, 'find trashdir -maxdepth 1 -type f -links +1 -delete');
    await runBackup({ docker: docker(), config, backend, log: silentLogger() }); // what the store holds already
    const other = uniqueName('cp-al');
    await docker().createVolume({ Name: other, Labels: { [TEST_LABEL]: inject('runId') } });
    try {
      // New Moodle files written in another volume, then hard-linked into the dataroot, as `cp -al` on the
      // host does: both volumes are on the engine's disk, seen here under one mount.
      const texts = Array.from({ length: 12 }, (_, i) => `copied in with cp -al ${i}`);
      const src = `/vols/${other}/_data/filedir`;
      await onVolumesDir(
        other,
        [
          ...texts.map((t) => {
            const h = sha1(t);
            return `mkdir -p ${src}/${h.slice(0, 2)}/${h.slice(2, 4)} && printf %s '${t}' > ${src}/${h.slice(0, 2)}/${h.slice(2, 4)}/${h}`;
          }),
          `chown -R 1001:1001 ${src}`,
          `cp -al ${src}/. /vols/${stack.volumes.moodledata_data}/_data/filedir/`,
        ].join(' && '),
      );
      const linked = texts.map((t) => at('filedir', sha1(t)));
      expect(await inDataroot(stack, `stat -c %h ${linked.join(' ')} | sort -u`)).toBe('2\n');
      const logs = capturingLogger();
      const s = await runBackup({ docker: docker(), config, backend, log: logs.log });
      // Each went to the store (before: all stayed in the tarball, read again at every run inside the window).
      expect(blobsOf(s).added).toBe(texts.length);
      const inside = logs.lines().find((l) => l.step === 'store' && l.phase === 'inside');
      // The window looked at no more than the directories the copy touched, not at every file.
      expect(inside?.changedDirs, JSON.stringify(inside)).toBeLessThanOrEqual(texts.length);
      const listed = await listText(s);
      for (const path of linked) expect(listed).toContain(path);

      const fp = await moodledata();
      await inDataroot(stack, `rm ${linked.slice(0, 6).join(' ')}`);
      await restoreSnapshot(s.id);
      // The same bytes, owners, modes and times; the six fetched from the store are files of their own now
      // (a link to another volume cannot be restored), the six still there kept theirs.
      const withoutLinks = (f: VolumeFingerprint) => ({
        ...f,
        entries: f.entries.map((e) => ({ ...e, nlink: 0 })),
      });
      expect(diffMinusExcludes(withoutLinks(fp), withoutLinks(await moodledata()))).toEqual([]);
      expect(await inDataroot(stack, `stat -c %h ${linked.join(' ')}`)).toBe(
        `${['1', '1', '1', '1', '1', '1', '2', '2', '2', '2', '2', '2'].join('\n')}\n`,
      );
    } finally {
      await docker()
        .getVolume(other)
        .remove()
        .catch(() => undefined);
    }
  });

  it('files added, deleted and written half-way while the stack stops are in the snapshot; a blob-shaped symlink is kept too', {
    timeout: 300_000,
  }, async () => {
    const backend = createBackend(config.target);
    // The seed's hard link to a blob (another path shares it, so it is not a plain blob) would make every
    // window list all files again: gone here, and the symlink below covers that way.
    await inDataroot(stack, 'find trashdir -maxdepth 1 -type f -links +1 -delete');
    // Directories changed this close to a listing are listed again anyway (coarse clocks): the seed is older.
    await sleep(SINCE_MARGIN_MS + 100);
    const m0 = await runBackup({ docker: docker(), config, backend, log: silentLogger() }); // stores the rest
    const pool = (
      await inDataroot(stack, "find filedir -type f -name '????????????????????????????????????????' | sort")
    )
      .trim()
      .split('\n');
    const gone = pool[0] as string;
    const stays = pool[1] as string;
    // Between two backups: a file added, one deleted. The next backup starts from m0's listing and lists
    // again only the directories whose ctime moved since m0's stop window.
    await inDataroot(stack, `${addBlob('added between two backups')} && rm ${pool[2]}`);
    const lateText = `written while stopping ${Date.now()}`;
    const lateHash = sha1(lateText);
    // A service that, as the sidecar stops it, adds a file in a new directory, deletes one and leaves a
    // Moodle temp file: all after the listing before the stop, so only the window's own look can see them.
    const onStop = [
      `mkdir -p /data/${dirOf(at('filedir', lateHash))}`,
      // Written to a temp file and renamed into place, as Moodle's file API does (never rewritten in place).
      `printf %s '${lateText}' > /data/${at('filedir', lateHash)}.new`,
      `mv /data/${at('filedir', lateHash)}.new /data/${at('filedir', lateHash)}`,
      `rm -f /data/${gone}`,
      `printf partial > /data/${stays}.tmp`,
    ].join(' && ');
    const cron = await docker().createContainer({
      name: `${stack.project}-cron-1`,
      Image: IMAGES.busybox,
      Cmd: ['sh', '-c', `trap "${onStop}; exit 0" TERM; sleep 600 & wait`],
      Labels: { ...composeLabels(stack.project, 'cron'), [TEST_LABEL]: inject('runId') },
      HostConfig: { Binds: [`${stack.volumes.moodledata_data}:/data`], NetworkMode: stack.network },
    });
    try {
      await cron.start();
      const logs = capturingLogger();
      const m = await runBackup({ docker: docker(), config, backend, log: logs.log });
      const before = logs.lines().find((l) => l.step === 'store' && l.phase === 'before-stop');
      expect(before?.previous, JSON.stringify(before)).toBe(m0.id);
      expect(before?.changedDirs, JSON.stringify(before)).toBeGreaterThanOrEqual(2);
      expect(before?.changedDirs, JSON.stringify(before)).toBeLessThanOrEqual(3);
      const inside = logs.lines().find((l) => l.step === 'store' && l.phase === 'inside');
      // The window looked only at the directories that changed: up to three touched while stopping, and the
      // two changed just before the listing began (within the clocks' margin, so looked at again).
      expect(inside?.changedDirs, JSON.stringify(inside)).toBeGreaterThanOrEqual(2);
      expect(inside?.changedDirs, JSON.stringify(inside)).toBeLessThanOrEqual(5);
      const fp = await moodledata();
      const paths = new Set(fp.entries.map((e) => e.path));
      expect(paths.has(at('filedir', lateHash))).toBe(true);
      expect(paths.has(gone)).toBe(false);
      expect(paths.has(`${stays}.tmp`)).toBe(true);
      expect(paths.has(pool[2] as string)).toBe(false);
      expect(blobsOf(m).added).toBe(2); // the one added between the backups, the one added while stopping

      // A blob-shaped symlink (not Moodle's, but possible) beside a plain blob: tar walks that directory
      // alone and keeps the link; the window lists no more than what changed.
      const beside = pool[4] as string; // a leaf directory of plain blobs, which the cron service leaves alone
      const link = `${dirOf(beside)}/${sha1('a symlink')}`;
      await inDataroot(stack, `ln -s ${beside.slice(beside.lastIndexOf('/') + 1)} ${link}`);
      const logs2 = capturingLogger();
      const m2 = await runBackup({ docker: docker(), config, backend, log: logs2.log });
      const inside2 = logs2.lines().find((l) => l.step === 'store' && l.phase === 'inside');
      expect(inside2?.changedDirs, JSON.stringify(inside2)).toBeLessThanOrEqual(5);
      expect(await listText(m2)).not.toContain(link);
      const fp2 = await moodledata();
      // The next backup starts from m2's listing, which marks that directory as one tar walks: the link stays
      // in the tarball though nothing there changed.
      await sleep(SINCE_MARGIN_MS + 100);
      const m3 = await runBackup({ docker: docker(), config, backend, log: silentLogger() });
      expect(blobsOf(m3)).toMatchObject({ count: blobsOf(m2).count, added: 0 });
      const fp3 = await moodledata(); // the cron service rewrote its files at each stop

      // Each comes back exactly: the blobs, the temp file, the symlink, every directory's owner, mode and time.
      await inDataroot(stack, `rm -rf filedir/${lateHash.slice(0, 2)} ${stays} ${link}`);
      await restoreSnapshot(m.id);
      expect(diffMinusExcludes(fp, await moodledata()), `restore of ${m.id}`).toEqual([]);
      await restoreSnapshot(m2.id);
      expect(diffMinusExcludes(fp2, await moodledata()), `restore of ${m2.id}`).toEqual([]);
      await inDataroot(stack, `rm ${link}`);
      await restoreSnapshot(m3.id);
      expect(diffMinusExcludes(fp3, await moodledata()), `restore of ${m3.id}`).toEqual([]);
    } finally {
      await cron.remove({ force: true });
    }
  });

  it('online: the next backup lists again only the leaf directories that changed since the last, as a stop does', {
    timeout: 300_000,
  }, async () => {
    const backend = createBackend(config.target);
    const online: Config = { ...config, mode: 'online' };
    const m0 = await runBackup({ docker: docker(), config: online, backend, log: silentLogger() });
    const pool = (
      await inDataroot(stack, "find filedir -type f -name '????????????????????????????????????????' | sort")
    )
      .trim()
      .split('\n');
    const added = at('filedir', sha1('added between two online backups'));
    const tmp = `${pool[0]}.tmp`; // Moodle's temp file while it writes: its directory is one tar walks
    await inDataroot(
      stack,
      `${addBlob('added between two online backups')} && rm ${pool[1]} && printf partial > ${tmp} && chown 1001:1001 ${tmp}`,
    );
    // Older than a listing's racy margin: the second look finds nothing new.
    await sleep(SINCE_MARGIN_MS + 100);
    const logs = capturingLogger();
    const m1 = await runBackup({ docker: docker(), config: online, backend, log: logs.log });
    const first = logs.lines().find((l) => l.step === 'store' && l.phase === 'before-stop');
    expect(first?.previous, JSON.stringify(first)).toBe(m0.id);
    expect(first?.changedDirs, JSON.stringify(first)).toBeGreaterThanOrEqual(1);
    expect(first?.changedDirs, JSON.stringify(first)).toBeLessThanOrEqual(3);
    // Most lines come from m0's listing, not from reading directories again.
    expect(Number(first?.reused), JSON.stringify(first)).toBeGreaterThan(blobsOf(m0).count / 2);
    const second = logs.lines().find((l) => l.step === 'store' && l.phase === 'inside');
    expect(second?.changedDirs, JSON.stringify(second)).toBe(0);
    expect(blobsOf(m1)).toMatchObject({ count: blobsOf(m0).count, added: 1 });
    const paths: string[] = [];
    for await (const b of snapshotBlobs(
      backend,
      m1,
      m1.volumes.find((x) => x.blobs) as Manifest['volumes'][number],
      undefined,
    ))
      paths.push(b.path);
    expect(paths).toContain(added);
    expect(paths).not.toContain(pool[1]);
    const fp = await moodledata();
    expect(fp.entries.some((e) => e.path === tmp)).toBe(true);

    await inDataroot(stack, `rm ${added} ${tmp}`);
    await restoreSnapshot(m1.id);
    expect(diffMinusExcludes(fp, await moodledata()), `restore of ${m1.id}`).toEqual([]);
    await inDataroot(stack, `rm ${tmp}`);
  });

  it('a staged restore that meets a damaged pack fails and leaves the live dataroot and the stack as they were', {
    timeout: 300_000,
  }, async () => {
    const backend = createBackend(config.target);
    // A file of its own, so no copy of its blob (a seeded trashdir twin, a hard link) stays in the dataroot
    // whatever ran before: the restore must fetch it from its pack.
    const text = 'a file only the damaged pack holds';
    const victim = at('filedir', sha1(text));
    await inDataroot(stack, addBlob(text));
    const m = await runBackup({ docker: docker(), config, backend, log: silentLogger() });
    await inDataroot(stack, `rm ${victim}`);
    const before = await moodledata();
    const packsDir = join((config.target as { path: string }).path, 'store', 'packs');
    const packs: string[] = [];
    for (const sub of await readdir(packsDir))
      for (const f of await readdir(join(packsDir, sub))) packs.push(join(packsDir, sub, f));
    const saved = new Map<string, Buffer>();
    for (const p of packs) {
      const bytes = await readFile(p);
      saved.set(p, Buffer.from(bytes));
      const mid = Math.floor(bytes.length / 2); // past the header: the pack decodes, its sha256 does not match
      bytes.writeUInt8(bytes.readUInt8(mid) ^ 0xff, mid);
      await writeFile(p, bytes);
    }
    try {
      const err = await restoreSnapshot(m.id).then(
        () => undefined,
        (e: unknown) => e as { code?: string },
      );
      expect(err?.code).toMatch(/INTEGRITY_FAILED|RESTORE_FAILED/);
      expect(diffMinusExcludes(before, await moodledata())).toEqual([]);
      expect(await stack.states()).toEqual({ mariadb: 'running', moodle: 'running' });
    } finally {
      for (const [p, bytes] of saved) await writeFile(p, bytes);
    }
    // With the packs whole again the same restore brings the file back.
    await restoreSnapshot(m.id);
    expect((await moodledata()).entries.some((e) => e.path === victim)).toBe(true);
  });

  it('restore --file: one deleted Moodle file back, by path or content hash, with nothing stopped', async () => {
    const backend = createBackend(config.target);
    const text = 'a file a teacher deleted by mistake';
    const path = at('filedir', sha1(text));
    await inDataroot(stack, addBlob(text));
    const m = await runBackup({ docker: docker(), config, backend, log: silentLogger() });
    await inDataroot(stack, `rm ${path}`);
    const before = await stack.states();
    const { restoreOneFile } = await import('../../src/restore/one-file.js');
    const r = await restoreOneFile({
      docker: docker(),
      config,
      backend,
      log: silentLogger(),
      snapshot: m.id,
      file: path,
    });
    expect(r).toMatchObject({ path, sha1: sha1(text), bytes: text.length, volume: 'moodledata_data' });
    expect(await inDataroot(stack, `cat ${path}; echo; stat -c '%u:%g' ${path}`)).toBe(
      `${text}\n1001:1001\n`,
    );
    expect(await stack.states()).toEqual(before);
    // By content hash, into another directory.
    const out = join(dirs.root, 'one-file');
    await restoreOneFile({
      docker: docker(),
      config,
      backend,
      log: silentLogger(),
      snapshot: m.id,
      file: sha1(text),
      to: out,
    });
    expect(await readFile(join(out, path), 'utf8')).toBe(text);
    await expect(
      restoreOneFile({
        docker: docker(),
        config,
        backend,
        log: silentLogger(),
        snapshot: m.id,
        file: 'filedir/no/such',
      }),
    ).rejects.toMatchObject({ code: 'SNAPSHOT_NOT_FOUND' });
  });

  it('a file and its directory dated before 1970 are listed, verified and restored with their times', {
    timeout: 180_000,
  }, async () => {
    // Negative times: find and stat give them, and a list that held one once could not be read back.
    const backend = createBackend(config.target);
    const path = at('filedir', sha1('a scan dated 1960'));
    await inDataroot(
      stack,
      `${addBlob('a scan dated 1960')} && touch -d '1960-01-01 00:00:00 UTC' ${path} ${dirOf(path)}`,
    );
    const fp = await moodledata();
    const m = await runBackup({ docker: docker(), config, backend, log: silentLogger() });
    // The line is in the snapshot's difference, or in the shared list it names (a first run's).
    const base = blobsOf(m).base?.sha256 ?? '';
    const shared = base
      ? execFileSync('zstd', ['-dc'], {
          input: await readFile(join(dirs.archive, 'store/lists', base.slice(0, 2), base)),
          encoding: 'utf8',
        })
      : '';
    expect(`${await listText(m)}${shared}`).toContain(`\t-315619200000\t${path}\n`);
    const report = await expectVerified(m.id);
    expect(report.results.some((r) => r.level === 'blobs')).toBe(true);
    // Gone, then back: the file from its pack, the directory from the list's line.
    await inDataroot(stack, `rm -r ${dirOf(path)}`);
    await restoreSnapshot(m.id);
    expect(diffMinusExcludes(fp, await moodledata())).toEqual([]);
    expect(await inDataroot(stack, `stat -c '%Y' ${path} ${dirOf(path)}`)).toBe('-315619200\n-315619200\n');
  });

  it('paths with a tab or a line break stay in the tarball: the list reads back, and they restore', {
    timeout: 180_000,
  }, async () => {
    // A list line cannot hold them; a snapshot holding one in its list once looked complete but never read.
    const backend = createBackend(config.target);
    const h = sha1('blob-shaped, odd path');
    await inDataroot(
      stack,
      [
        `mkdir -p $'filedir/ab/c\\td' $'filedir/a\\nb/cd' $'trashdir/x\\ny/zz'`,
        `printf %s 'blob-shaped, odd path' > $'filedir/a\\nb/cd/'${h}`,
        `printf %s 'a note' > $'filedir/ab/c\\td/note.txt'`,
        `chown -R 1001:1001 filedir trashdir`,
      ].join(' && '),
    );
    // Mode, owner, size and content of everything with a tab or line break in its path, NUL-separated.
    const odd = () =>
      inDataroot(
        stack,
        `find filedir trashdir -regex $'.*[\\t\\n].*' -printf '%y %m %U:%G %s %p\\0' | sort -z | tr '\\0\\t\\n' '|TN'; ` +
          `find filedir trashdir -regex $'.*[\\t\\n].*' -type f -exec cat {} +`,
      );
    const before = await odd();
    expect(before.match(/\|/g)).toHaveLength(7); // 5 directories and 2 files, each ended by a |
    const m1 = await runBackup({ docker: docker(), config, backend, log: silentLogger() });
    // With the blob-shaped file gone, only the directories remain odd (no directory line; in the tarball).
    await inDataroot(stack, `rm $'filedir/a\\nb/cd/'${h}`);
    const afterRm = await odd();
    await runBackup({ docker: docker(), config, backend, log: silentLogger() });
    // Nothing changed since: those directories (no stamp is kept for them) are not looked at again, so the
    // whole kept listing is this run's.
    await sleep(SINCE_MARGIN_MS + 100);
    const logs = capturingLogger();
    const m3 = await runBackup({ docker: docker(), config, backend, log: logs.log });
    const first = logs.lines().find((l) => l.step === 'store' && l.phase === 'before-stop');
    expect(first, JSON.stringify(first)).toMatchObject({ changedDirs: 0, reused: first?.listed });
    for (const [m, want] of [
      [m1, before],
      [m3, afterRm],
    ] as const) {
      await expectVerified(m.id);
      await inDataroot(stack, `rm -r $'filedir/ab/c\\td' $'filedir/a\\nb' $'trashdir/x\\ny'`);
      await restoreSnapshot(m.id);
      expect(await odd(), m.id).toBe(want);
    }
    await inDataroot(stack, `rm -r $'filedir/ab/c\\td' $'filedir/a\\nb' $'trashdir/x\\ny'`);
  });

  it('a directory whose name is not UTF-8 stays in the tarball with what it holds, blob-shaped or not', {
    timeout: 180_000,
  }, async () => {
    // Read as text its name would become another one (U+FFFD): no list line can name what it holds, so tar
    // keeps the directory whole, by its bytes; the window still lists only what changed (until 2026-12-07 it
    // listed every file again).
    const backend = createBackend(config.target);
    const h = sha1('under a latin-1 name');
    const dir = `$'filedir/caf\\xe9/cd'`;
    await inDataroot(
      stack,
      `mkdir -p ${dir} && printf %s 'under a latin-1 name' > ${dir}/${h} && printf %s 'x' > ${dir}/x.txt && ` +
        `printf %s 'at the top' > $'caf\\xe9.txt'`,
    );
    const odd = () =>
      inDataroot(
        stack,
        `export LC_ALL=C; find . -regex $'.*\\xe9.*' -printf '%y %m %U:%G %s %p\\n' | sort | od -An -c | tr -s ' \\n' ' '; ` +
          `find . -regex $'.*\\xe9.*' -type f | sort | xargs cat`,
      );
    const before = await odd();
    expect(before).toContain('under a latin-1 name');
    const m1 = await runBackup({ docker: docker(), config, backend, log: silentLogger() });
    await inDataroot(stack, `rm ${dir}/${h}`);
    const afterRm = await odd();
    const logs = capturingLogger();
    const m2 = await runBackup({ docker: docker(), config, backend, log: logs.log });
    // m1's listing was kept for m2, which started from it; its window looked at what changed only.
    const first = logs.lines().find((l) => l.step === 'store' && l.phase === 'before-stop');
    expect(first?.previous, JSON.stringify(first)).toBe(m1.id);
    const inside = logs.lines().find((l) => l.step === 'store' && l.phase === 'inside');
    expect(inside?.changedDirs, JSON.stringify(inside)).toBeLessThanOrEqual(2);
    // The first into a dataroot without them; the second over the first's (the live areas hold the name).
    for (const [m, want, clear] of [
      [m1, before, true],
      [m2, afterRm, false],
    ] as const) {
      await expectVerified(m.id);
      if (clear) await inDataroot(stack, `rm -r $'filedir/caf\\xe9' $'caf\\xe9.txt'`);
      await restoreSnapshot(m.id);
      expect(await odd(), m.id).toBe(want);
    }
    await inDataroot(stack, `rm -r $'filedir/caf\\xe9' $'caf\\xe9.txt'`);
  });

  it('a kept base whose text changed on the state volume is not diffed against: the next run writes a new base', async () => {
    const backend = createBackend(config.target);
    const m1 = await runBackup({ docker: docker(), config, backend, log: silentLogger() });
    const kept = (await readdir(dirs.state, { recursive: true })).filter((f) => /bases\/.*\.lines$/.test(f));
    expect(kept).toHaveLength(1);
    const path = join(dirs.state, kept[0] as string);
    // One line's mtime moved, as a damaged copy would have it: a difference against it would leave the
    // real change to that line unwritten.
    const text = await readFile(path, 'utf8');
    await writeFile(
      path,
      text.replace(/\t(\d{13})\t/, (_m, t: string) => `\t${Number(t) + 1000}\t`),
    );
    // A file added, so the next list is not the last one said again (that reads no base text at all).
    await inDataroot(stack, addBlob('added after the base changed'));
    const m2 = await runBackup({ docker: docker(), config, backend, log: silentLogger() });
    expect(blobsOf(m1).base?.sha256).toBeDefined();
    expect(blobsOf(m2).base).toMatchObject({ added: true, count: blobsOf(m1).count + 1 });
    expect(blobsOf(m2).base?.sha256).not.toBe(blobsOf(m1).base?.sha256);
    const want = await moodledata();
    await runRestore({
      docker: docker(),
      config,
      backend,
      log: silentLogger(),
      snapshot: m2.id,
      safetySnapshot: false,
    });
    expect(diffMinusExcludes(want, await moodledata())).toEqual([]);
  });

  /**
   * 400 new files of 24 KiB each, random (zstd cannot shrink them), backed up through the CLI (the image's
   * Node) into packs that span several frames; two of them deleted, then restored: only their frames are read.
   */
  async function framedRestore(env: NodeJS.ProcessEnv) {
    const added = (
      await inDataroot(
        stack,
        'for i in $(seq 1 400); do f=$(mktemp); head -c 24576 /dev/urandom >"$f"; h=$(sha1sum "$f" | cut -c1-40); ' +
          'd=filedir/$(echo $h | cut -c1-2)/$(echo $h | cut -c3-4); mkdir -p "$d"; mv "$f" "$d/$h"; chown 1001:1001 "$d/$h"; chmod 0644 "$d/$h"; echo "$d/$h"; done',
      )
    )
      .trim()
      .split('\n');
    expect(added).toHaveLength(400);
    const backup = await runCli(['backup', '--json'], env);
    expect(backup.code, backup.stderr).toBe(0);
    const m = JSON.parse(backup.stdout) as Manifest;
    const gone = [added[3] as string, added[396] as string];
    const packs = await packsOf(env, gone);
    for (const p of packs) expect(p.frames?.lengths.length, 'frames in the pack').toBeGreaterThan(3);
    const fp = await moodledata();
    // verify --read-data reads the framed packs whole (one zstd stream) and checks every blob against its name.
    const verified = await runCli(['verify', m.id, '--read-data'], env, { timeoutMs: 240_000 });
    expect(verified.code, verified.stderr).toBe(0);

    await inDataroot(stack, `rm ${gone.join(' ')}`);
    const r = await runCli(['restore', m.id, '--yes', '--no-safety-snapshot'], env, { timeoutMs: 240_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(diffMinusExcludes(fp, await moodledata())).toEqual([]);
    const placed = logLines(r.stderr).find(
      (l) => l.step === 'restore' && l.volume === 'moodledata_data' && typeof l.fetched === 'number',
    );
    expect(placed).toMatchObject({ fetched: 2, framedPacks: packs.length });
    const whole = packs.reduce((n, p) => n + p.storedSize, 0);
    expect(placed?.packBytes as number).toBeGreaterThan(0);
    expect(placed?.packBytes as number, `of ${whole} bytes of packs`).toBeLessThanOrEqual(whole / 2);

    // One file back alone, by its frames.
    await inDataroot(stack, `rm ${gone[0]}`);
    const one = await runCli(['restore', m.id, '--file', gone[0] as string], env);
    expect(one.code, one.stderr).toBe(0);
    // The file as it was (its directory's mtime moves: a one-file restore leaves the live site's directories be).
    expect(await inDataroot(stack, `sha1sum < ${gone[0]} | cut -c1-40; stat -c '%u:%g %a' ${gone[0]}`)).toBe(
      `${(gone[0] as string).slice(-40)}\n1001:1001 644\n`,
    );
    return { m, gone, packs, fp };
  }

  /** The packs that hold these files, from the target's index (read with the sidecar's own code). */
  async function packsOf(env: NodeJS.ProcessEnv, paths: string[]): Promise<PackRecord[]> {
    const cfg = await loadConfig(env);
    const index = await loadIndex(createBackend(cfg.target), {
      codec: getCodec('zstd'),
      decrypt: storeDecrypter(cfg.encryption, 'store'),
    });
    const packs = new Map<string, PackRecord>();
    for (const path of paths) {
      const p = index.pack(index.lookup(Buffer.from(path.slice(-40), 'hex'))?.packId ?? '');
      expect(p, path).toBeDefined();
      packs.set((p as PackRecord).id, p as PackRecord);
    }
    return [...packs.values()];
  }

  it('BACKUP_STORE_FRAMES=on, local target, through the CLI: a restore lacking two files reads only their frames; a damaged frame stops it with nothing changed', {
    timeout: 300_000,
  }, async () => {
    const env = cliEnv(stack.project, dirs, { BACKUP_STORE_FRAMES: 'on' });
    const { m, gone, packs, fp } = await framedRestore(env);
    const packFile = (id: string) => join((config.target as { path: string }).path, packKey(id));
    for (const p of packs) execFileSync('zstd', ['-tq', packFile(p.id)]); // still one zstd stream to `zstd -d`

    // A byte flipped in the middle of every frame: the blobs read back wrong or not at all.
    await inDataroot(stack, `rm ${gone.join(' ')}`);
    const before = await moodledata();
    const saved = new Map<string, Buffer>();
    for (const p of packs) {
      const bytes = await readFile(packFile(p.id));
      saved.set(p.id, Buffer.from(bytes));
      let start = 0;
      for (const len of p.frames?.lengths ?? []) {
        const mid = start + Math.floor(len / 2);
        bytes.writeUInt8(bytes.readUInt8(mid) ^ 0xff, mid);
        start += len;
      }
      await writeFile(packFile(p.id), bytes);
    }
    try {
      const bad = await runCli(['restore', m.id, '--yes', '--no-safety-snapshot'], env, {
        timeoutMs: 240_000,
      });
      // RESTORE_FAILED (9), its cause the damaged frame, every volume untouched.
      expect(bad.code, bad.stderr).toBe(9);
      expect(bad.stderr).toMatch(/frame \d+ does not decode.*"code":"INTEGRITY_FAILED"/);
      expect(bad.stderr).toContain('moodledata_data: untouched');
      expect(diffMinusExcludes(before, await moodledata())).toEqual([]);
      expect(await stack.states()).toEqual({ mariadb: 'running', moodle: 'running' });
      const unverified = await runCli(['verify', m.id, '--read-data'], env, { timeoutMs: 240_000 });
      expect(unverified.code, unverified.stderr).not.toBe(0);
    } finally {
      for (const [id, bytes] of saved) await writeFile(packFile(id), bytes);
    }
    await restoreSnapshot(m.id);
    expect(diffMinusExcludes(fp, await moodledata())).toEqual([]);
  });

  it('to S3 (frames by default there), through the CLI: a restore lacking two files downloads only their frames, by range', {
    timeout: 300_000,
  }, async () => {
    const bucket = await createTestBucket('frames');
    await framedRestore(s3Env(stack, dirs, bucket, s3Host()));
  });

  it("age-encrypted packs as frames (local target, BACKUP_STORE_FRAMES=on): a restore lacking two files opens only their frames' age chunks; a damaged chunk stops it with nothing changed", {
    timeout: 300_000,
  }, async () => {
    const identity = await generateIdentity();
    // A store of its own: an encrypted store's lists and packs are not the plain one the other tests read.
    const own = await tempDirs('incremental-age');
    const env = cliEnv(stack.project, own, {
      BACKUP_STORE_FRAMES: 'on',
      BACKUP_AGE_RECIPIENTS: await identityToRecipient(identity),
      BACKUP_AGE_IDENTITY: identity,
    });
    onTestFinished(() => own.remove());
    const { m, gone, packs, fp } = await framedRestore(env);
    const packFile = (id: string) => join(own.archive, packKey(id));
    // One bit flipped in every age chunk of the packs: whichever the restore opens is damaged.
    await inDataroot(stack, `rm ${gone.join(' ')}`);
    const before = await moodledata();
    const saved = new Map<string, Buffer>();
    for (const p of packs) {
      const bytes = await readFile(packFile(p.id));
      expect(bytes.subarray(0, 21).toString()).toBe('age-encryption.org/v1');
      saved.set(p.id, Buffer.from(bytes));
      for (let at = ageHeaderEnd(bytes) + 16 + 100; at < bytes.length; at += 65536 + 16)
        bytes.writeUInt8(bytes.readUInt8(at) ^ 1, at);
      await writeFile(packFile(p.id), bytes);
    }
    try {
      const bad = await runCli(['restore', m.id, '--yes', '--no-safety-snapshot'], env, {
        timeoutMs: 240_000,
      });
      expect(bad.code, bad.stderr).toBe(9);
      expect(bad.stderr).toMatch(/age chunk \d+ does not open.*"code":"INTEGRITY_FAILED"/);
      expect(bad.stderr).toContain('moodledata_data: untouched');
      expect(diffMinusExcludes(before, await moodledata())).toEqual([]);
      expect(await stack.states()).toEqual({ mariadb: 'running', moodle: 'running' });
    } finally {
      for (const [id, bytes] of saved) await writeFile(packFile(id), bytes);
    }
    const good = await runCli(['restore', m.id, '--yes', '--no-safety-snapshot'], env, {
      timeoutMs: 240_000,
    });
    expect(good.code, good.stderr).toBe(0);
    expect(diffMinusExcludes(fp, await moodledata())).toEqual([]);
  });

  it('a snapshot restores by hand with tar, zstd and awk, as docs/format.md says', async () => {
    const backend = createBackend(config.target);
    // A file added and one deleted since the last snapshot: this one's list is a difference from a base.
    const first = (
      await inDataroot(
        stack,
        "find filedir -type f -name '????????????????????????????????????????' | sort | sed -n 1p",
      )
    ).trim();
    await inDataroot(stack, `${addBlob('restored by hand')} && rm ${first}`);
    const m = await runBackup({ docker: docker(), config, backend, log: silentLogger() });
    expect(blobsOf(m).base?.added).toBe(false);
    const want = await moodledata();
    const target = (config.target as { path: string }).path;
    const volume = uniqueName('byhand');
    await docker().createVolume({ Name: volume, Labels: { [TEST_LABEL]: inject('runId') } });
    const v = m.volumes.find((x) => x.name === 'moodledata_data');
    const script = [
      'set -euo pipefail',
      `snap=/target/${m.id}`,
      'cd /restore',
      // Every pack into a pool, then each listed blob to its place with its owner, mode and time.
      'mkdir /tmp/pool && for p in /target/store/packs/*/*; do zstd -dc "$p" | tar -x -C /tmp/pool; done',
      // The list: whole (format 2), or the difference from a shared base that replaces its lines (format 3).
      `zstd -dc "$snap/${v?.blobs?.file}" > /tmp/list`,
      'if [ "$(head -n 1 /tmp/list)" = "mbs-blobs 3" ]; then',
      '  base=$(sed -n 2p /tmp/list | cut -f 2)',
      // biome-ignore lint/suspicious/noTemplateCurlyInString: bash parameter expansion, not a template
      '  zstd -dc "/target/store/lists/${base:0:2}/$base" | tail -n +2 > /tmp/base',
      `  tail -n +3 /tmp/list | awk -F '\\t' 'NR == FNR { named[$NF] = 1; if ($1 != "gone") print; next } !($NF in named)' - /tmp/base > /tmp/lines`,
      'else tail -n +2 /tmp/list > /tmp/lines; fi',
      // Files first, then the directories (their times set last).
      `{ awk -F '\\t' '$1 != "-"' /tmp/lines; awk -F '\\t' '$1 == "-"' /tmp/lines; } | while IFS=$'\\t' read -r sha size mode uid gid mtime path; do`,
      // A directory line (`-` for sha1 and size, after every file) makes the directory; a blob line copies.
      '  if [ "$sha" = - ]; then mkdir -p "$path"',
      // biome-ignore lint/suspicious/noTemplateCurlyInString: bash parameter expansion, not a template
      '  else mkdir -p "$(dirname "$path")" && cp "/tmp/pool/filedir/${sha:0:2}/${sha:2:2}/$sha" "$path"; fi',
      '  chown "$uid:$gid" "$path"; chmod "$mode" "$path"; touch -d "@$(( (mtime - (mtime < 0 ? 999 : 0)) / 1000 ))" "$path"',
      'done',
      // The tarball last: it holds everything else, and gives the directories their owners, modes and times.
      `zstd -dc "$snap/${v?.file}" | tar -x --numeric-owner`,
    ].join('\n');
    const name = uniqueName('byhand');
    const c = await docker().createContainer({
      name,
      Image: IMAGES.base,
      Cmd: ['bash', '-c', script],
      Labels: { [TEST_LABEL]: inject('runId') },
      HostConfig: { Binds: [`${target}:/target:ro`, `${volume}:/restore`], NetworkMode: 'none' },
    });
    try {
      await c.start();
      const r = (await c.wait()) as { StatusCode: number };
      const logs = (await c.logs({ stdout: true, stderr: true })).toString();
      expect(r.StatusCode, logs).toBe(0);
      const got: VolumeFingerprint = await fingerprintVolume(volume);
      expect(diffMinusExcludes(want, got)).toEqual([]);
    } finally {
      await c.remove({ force: true });
      await docker().getVolume(volume).remove({ force: true });
    }
  });

  it('to S3 with age recipients only: packs encrypted, the index readable by the next backup, restored with the identity', async () => {
    const identity = await generateIdentity();
    const bucket = await createTestBucket('incremental');
    const enc: Config = {
      ...config,
      target: testS3Target(bucket),
      encryption: { recipients: [await identityToRecipient(identity)], identities: [] },
    };
    const backend = createBackend(enc.target);
    const first = await runBackup({ docker: docker(), config: enc, backend, log: silentLogger() });
    const want = await moodledata();
    const second = await runBackup({ docker: docker(), config: enc, backend, log: silentLogger() });
    expect(blobsOf(first).added).toBe(blobsOf(first).count);
    expect(blobsOf(second).added).toBe(0);
    const packs = (await backend.list('store/packs/')).length;
    expect(packs).toBeGreaterThan(0);
    await inDataroot(stack, `rm -rf filedir/* trashdir/*`);
    const withKey: Config = { ...enc, encryption: { recipients: [], identities: [identity] } };
    await runRestore({
      docker: docker(),
      config: withKey,
      backend,
      log: silentLogger(),
      snapshot: second.id,
      safetySnapshot: false,
    });
    expect(diffMinusExcludes(want, await moodledata())).toEqual([]);
    // Nothing of the store is readable without the key: the packs start with age's header.
    const [one] = await backend.list('store/packs/');
    const head = Buffer.concat(await (await backend.get(one?.key as string)).toArray()).subarray(0, 21);
    expect(head.toString()).toBe('age-encryption.org/v1');
    expect(await readdir(join(dirs.spool))).toEqual([]);
  });
});

import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { generateIdentity, identityToRecipient } from 'age-encryption';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Manifest } from '../../src/archive/manifest.js';
import { logLines, runCli } from '../harness/cli.js';
import { cliEnv, type TempDirs, tempDirs } from '../harness/config.js';
import { execOk } from '../harness/docker.js';
import { lifecycle, projectEvents } from '../harness/events.js';
import { fingerprintDb } from '../harness/fingerprint.js';
import { createMoodleStack, DB, type MoodleStack } from '../harness/stack.js';

/** A marker in the dataroot: an archive stored in the clear (codec none) would contain it verbatim. */
const MARKER = 'plaintext-marker-7f3c2a9e51d4';

describe('encryption at rest (age)', () => {
  let stack: MoodleStack;
  let dirs: TempDirs;
  let identity: string;
  let recipient: string;
  let wrongIdentity: string;
  let encrypted: Manifest;

  beforeAll(async () => {
    [stack, dirs] = await Promise.all([createMoodleStack(), tempDirs('age')]);
    identity = await generateIdentity();
    recipient = await identityToRecipient(identity);
    wrongIdentity = await generateIdentity();
    await execOk(stack.containers.moodle, ['sh', '-c', `echo ${MARKER} > /bitnami/moodledata/marker.txt`]);
  });
  afterAll(async () => {
    await stack?.remove();
    await dirs?.remove();
  });

  const env = (extra: Record<string, string> = {}) =>
    cliEnv(stack.project, dirs, { BACKUP_COMPRESSION: 'none', ...extra });

  it('backup with BACKUP_AGE_RECIPIENTS_FILE: .age archives, no plaintext stored, the manifest says how but holds no key', async () => {
    const rcpFile = join(dirs.root, 'recipients.txt');
    await writeFile(rcpFile, `# backup key\n${recipient}\n`);
    const r = await runCli(['backup', '--json'], env({ BACKUP_AGE_RECIPIENTS_FILE: rcpFile }), {
      timeoutMs: 180_000,
    });
    expect(r.code, r.stderr).toBe(0);
    encrypted = JSON.parse(r.stdout) as Manifest;
    expect(encrypted.encryption).toEqual({
      scheme: 'age',
      format: 'age-encryption.org/v1',
      keyType: 'recipients',
      recipientTypes: ['X25519'],
      recipients: 1,
    });
    const dir = join(dirs.archive, encrypted.id);
    expect((await readdir(dir)).sort()).toEqual([
      'manifest.json',
      'mariadb_data.tar.age',
      'moodle_data.tar.age',
      'moodledata_data.blobs.age',
      'moodledata_data.tar.age',
    ]);
    // Archives, the blob list, the store's packs and index files: all age ciphertext.
    const store = join(dirs.archive, 'store');
    const storeFiles = (await readdir(store, { recursive: true, withFileTypes: true }))
      .filter((e) => e.isFile())
      .map((e) => join(e.parentPath, e.name));
    expect(storeFiles.length).toBeGreaterThan(1);
    for (const path of [
      join(dir, 'moodledata_data.tar.age'),
      join(dir, 'moodledata_data.blobs.age'),
      ...storeFiles,
    ]) {
      const stored = await readFile(path);
      expect(stored.subarray(0, 21).toString(), path).toBe('age-encryption.org/v1');
      expect(stored.includes(MARKER), path).toBe(false);
    }
    const manifestText = await readFile(join(dir, 'manifest.json'), 'utf8');
    expect(manifestText).not.toContain(recipient);
    expect(manifestText).not.toContain(identity);
  });

  it.each([
    {
      name: 'no identity',
      extra: () => ({}),
      message:
        /error \[DECRYPTION_FAILED\]: snapshot \S+ is encrypted \(age to 1 recipient\(s\) \(X25519\)\) and no identity is configured; nothing was changed/,
    },
    {
      name: 'a wrong identity',
      extra: () => ({ BACKUP_AGE_IDENTITY: wrongIdentity }),
      message: /error \[DECRYPTION_FAILED\]: snapshot \S+, volume \w+: the configured identities do not open/,
    },
  ])('restore with $name: exit 2, a clear error, nothing stopped or changed', async ({ extra, message }) => {
    await stack.sql(`UPDATE mdl_user SET lastname='After-${Date.now()}' WHERE id < 10`);
    const before = await fingerprintDb(stack.sql, DB.name);
    await sleep(1100); // events are matched by the second: keep the backup's restarts out
    const t0 = Date.now();
    const r = await runCli(['restore', encrypted.id, '--yes'], env(extra()), { timeoutMs: 120_000 });
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).toMatch(/BACKUP_AGE_IDENTITY/);
    expect(r.stderr + r.stdout).not.toContain(wrongIdentity);
    expect(lifecycle(await projectEvents(stack.project, t0))).toEqual([]);
    expect(await stack.states()).toEqual({ mariadb: 'running', moodle: 'running' });
    expect(await fingerprintDb(stack.sql, DB.name)).toEqual(before);
    expect(logLines(r.stderr).some((l) => l.step === 'safety')).toBe(false);
  });

  it('restore with the identity brings the data back; its safety snapshot is encrypted too', async () => {
    await execOk(stack.containers.moodle, ['sh', '-c', 'echo changed > /bitnami/moodledata/marker.txt']);
    const r = await runCli(
      ['restore', encrypted.id, '--yes', '--volume', 'moodledata_data'],
      env({ BACKUP_AGE_IDENTITY: identity }),
      { timeoutMs: 180_000 },
    );
    expect(r.code, r.stderr).toBe(0);
    const marker = await stack.exec('moodle', ['cat', '/bitnami/moodledata/marker.txt']);
    expect(marker.stdout.trim()).toBe(MARKER);
    const safety = logLines(r.stderr).find((l) => l.step === 'safety')?.snapshot as string;
    expect(safety).toBeTruthy();
    const safetyManifest = JSON.parse(
      await readFile(join(dirs.archive, safety, 'manifest.json'), 'utf8'),
    ) as Manifest;
    expect(safetyManifest.encryption?.keyType).toBe('recipients');
    expect((await readFile(join(dirs.archive, safety, 'moodledata_data.tar.age'))).includes('changed')).toBe(
      false,
    );
    const v = await runCli(['verify', safety], env({ BACKUP_AGE_IDENTITY: identity }));
    expect(v.code, v.stderr).toBe(0);
  }, 240_000);

  it('a passphrase (BACKUP_AGE_PASSPHRASE_FILE) round-trips; a wrong one is refused before anything stops', async () => {
    const pass = join(dirs.root, 'pass.txt');
    await writeFile(pass, 'correct horse battery staple\n');
    const b = await runCli(
      ['backup', '--json'],
      env({ BACKUP_AGE_PASSPHRASE_FILE: pass, BACKUP_VOLUMES: 'moodle_data' }),
      { timeoutMs: 180_000 },
    );
    expect(b.code, b.stderr).toBe(0);
    const m = JSON.parse(b.stdout) as Manifest;
    expect(m.encryption?.keyType).toBe('passphrase');
    expect(m.encryption?.recipientTypes).toEqual(['scrypt']);

    await sleep(1100); // events are matched by the second: keep the backup's restarts out
    const t0 = Date.now();
    const wrong = await runCli(
      ['restore', m.id, '--yes', '--no-safety-snapshot'],
      env({ BACKUP_AGE_PASSPHRASE: 'wrong horse battery staple' }),
      { timeoutMs: 120_000 },
    );
    expect(wrong.code, wrong.stderr).toBe(2);
    expect(wrong.stderr).toMatch(
      /DECRYPTION_FAILED.*the configured passphrase does not open moodle_data\.tar\.age/,
    );
    expect(wrong.stderr).not.toContain('wrong horse');
    expect(lifecycle(await projectEvents(stack.project, t0))).toEqual([]);

    await execOk(stack.containers.moodle, ['sh', '-c', 'echo "// edited" >> /bitnami/moodle/config.php']);
    const ok = await runCli(
      ['restore', m.id, '--yes', '--no-safety-snapshot'],
      env({ BACKUP_AGE_PASSPHRASE_FILE: pass }),
      { timeoutMs: 180_000 },
    );
    expect(ok.code, ok.stderr).toBe(0);
    const config = await stack.exec('moodle', ['cat', '/bitnami/moodle/config.php']);
    expect(config.stdout).not.toContain('// edited');
    expect(await stack.states()).toEqual({ mariadb: 'running', moodle: 'running' });
  }, 300_000);
});

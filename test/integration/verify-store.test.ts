import { readFile, truncate, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Backend } from '../../src/storage/backend.js';
import { createBackend } from '../../src/storage/index.js';
import { packKey } from '../../src/store/layout.js';
import type { VerifyReport } from '../../src/verify/types.js';
import { runCli } from '../harness/cli.js';
import { cliEnv, type TempDirs, tempDirs } from '../harness/config.js';
import { Dataroot, packContents, type StoredSnapshot, snapshotDataroot } from '../harness/store-target.js';

const KiB = 1024;

describe('verify checks incremental snapshots against the store (local target, CLI)', () => {
  let dirs: TempDirs;
  let backend: Backend;
  let env: NodeJS.ProcessEnv;
  let s1: StoredSnapshot;
  let s2: StoredSnapshot;
  /** A pack only s1 and s2 need (A's), and one only s2 needs (B's). */
  let aPack: string;
  let bPack: string;

  async function verify(...args: string[]) {
    const r = await runCli(['verify', '--all', '--json', ...args], env, { timeoutMs: 60_000 });
    const report = JSON.parse(r.stdout) as VerifyReport;
    const blobs = report.results.filter((x) => x.level === 'blobs');
    return { code: r.code, stderr: r.stderr, blobs, failed: blobs.filter((x) => !x.ok) };
  }

  /** Damages one stored file, runs `check`, puts the file back. */
  async function damaged(key: string, damage: (path: string) => Promise<void>, check: () => Promise<void>) {
    const path = join(dirs.archive, key);
    const good = await readFile(path);
    await damage(path);
    try {
      await check();
    } finally {
      await writeFile(path, good);
    }
  }

  beforeAll(async () => {
    dirs = await tempDirs('verify-store');
    env = cliEnv('verify-store', dirs);
    backend = createBackend({ type: 'local', path: dirs.archive });
    const o = { packSize: 32 * KiB, spool: dirs.spool };
    const d = new Dataroot(join(dirs.root, 'dataroot'));
    const a = await d.add(8);
    s1 = await snapshotDataroot(backend, d, new Date(Date.now() - 7_200_000), o);
    const b = await d.add(8);
    s2 = await snapshotDataroot(backend, d, new Date(Date.now() - 3_600_000), o);
    const packs = [...(await packContents(backend))];
    aPack = packs.find(([, blobs]) => blobs.has(a[0] as string))?.[0] as string;
    bPack = packs.find(([, blobs]) => blobs.has(b[0] as string))?.[0] as string;
  });
  afterAll(async () => {
    await dirs?.remove();
  });

  it('passes on an intact store, plain and with --read-data', async () => {
    const plain = await verify();
    expect(plain.code, plain.stderr).toBe(0);
    expect(plain.blobs.map((x) => [x.snapshot, x.ok])).toEqual([
      [s2.manifest.id, true],
      [s1.manifest.id, true],
    ]);
    expect(plain.blobs[0]?.detail).toMatch(/^16 blobs, each in a stored pack/);
    const deep = await verify('--read-data');
    expect(deep.code, deep.stderr).toBe(0);
    expect(deep.blobs[0]?.detail).toMatch(/^16 blobs read back from \d+ pack\(s\), every SHA-1 matches/);
  });

  it('detects a deleted pack and a truncated pack in every snapshot that needs it', async () => {
    await damaged(
      packKey(aPack),
      (p) => unlink(p),
      async () => {
        const r = await verify();
        expect(r.code).not.toBe(0);
        expect(r.failed.map((x) => x.snapshot).sort()).toEqual([s1.manifest.id, s2.manifest.id].sort());
        for (const f of r.failed) expect(f.detail).toContain(`pack ${aPack} is missing`);
      },
    );
    await damaged(
      packKey(bPack),
      (p) => truncate(p, 100),
      async () => {
        const r = await verify();
        expect(r.failed.map((x) => x.snapshot)).toEqual([s2.manifest.id]);
        expect(r.failed[0]?.detail).toMatch(new RegExp(`pack ${bPack} has 100 bytes, not \\d+`));
      },
    );
  });

  it('detects a tampered blob list', async () => {
    await damaged(
      `${s1.manifest.id}/moodledata_data.blobs.zst`,
      async (p) => {
        const b = await readFile(p);
        b[b.length - 6] = (b[b.length - 6] ?? 0) ^ 0x01;
        await writeFile(p, b);
      },
      async () => {
        const r = await verify();
        expect(r.failed.map((x) => x.snapshot)).toEqual([s1.manifest.id]);
        expect(r.failed[0]?.code).toBe('INTEGRITY_FAILED');
        expect(r.failed[0]?.detail).toContain('moodledata_data.blobs.zst');
      },
    );
  });

  it('--read-data detects a flipped byte inside a pack that plain verify cannot see', async () => {
    await damaged(
      packKey(bPack),
      async (p) => {
        const b = await readFile(p);
        const at = Math.floor(b.length / 2);
        b[at] = (b[at] ?? 0) ^ 0x40;
        await writeFile(p, b);
      },
      async () => {
        const plain = await verify();
        expect(plain.code, plain.stderr).toBe(0);
        const r = await verify('--read-data');
        expect(r.code).not.toBe(0);
        expect(r.failed.map((x) => x.snapshot)).toEqual([s2.manifest.id]);
        expect(r.failed[0]?.detail).toContain(`pack ${bPack}`);
      },
    );
  });
});

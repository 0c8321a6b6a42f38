import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Backend } from '../../src/storage/backend.js';
import { createBackend } from '../../src/storage/index.js';
import { runCli } from '../harness/cli.js';
import { cliEnv, type TempDirs, tempDirs } from '../harness/config.js';
import { killLive, type LogLine, startCli } from '../harness/live.js';
import { KEEP_LAST_2_ENV } from '../harness/retention.js';
import { createTestBucket, s3Host, testS3Target } from '../harness/s3.js';
import {
  Dataroot,
  packContents,
  packIds,
  restoreBlobs,
  type StoredSnapshot,
  snapshotDataroot,
} from '../harness/store-target.js';

/**
 * kill -9 of `prune` while it sweeps the store (S3 target: each delete is a request, so a sweep of ~40
 * packs lasts long enough to be killed in the middle), at each logged step: after the mark, after the plan
 * (repack under way), once the repack is stored, at the first index file deleted, at the first pack
 * deleted. After each kill every kept snapshot restores byte for byte and no index file names a missing
 * pack; a second prune then finishes: no dead pack is left.
 */
const POINTS: { name: string; at: (l: LogLine) => boolean }[] = [
  { name: 'after the mark', at: (l) => l.step === 'sweep' && l.phase === 'mark' },
  { name: 'after the plan, repacking', at: (l) => l.step === 'sweep' && l.phase === 'plan' },
  { name: 'repack stored', at: (l) => l.step === 'sweep' && l.phase === 'repacked' },
  { name: 'deleting index files', at: (l) => l.step === 'sweep' && l.phase === 'index' },
  { name: 'deleting packs', at: (l) => l.step === 'sweep' && l.phase === 'pack' },
];

async function copyPrefix(from: Backend, to: Backend): Promise<void> {
  const objects = await from.list('');
  let next = 0;
  const worker = async () => {
    for (let o = objects[next++]; o; o = objects[next++]) await to.put(o.key, await from.get(o.key));
  };
  await Promise.all(Array.from({ length: 8 }, worker));
}

describe('prune crash: kill -9 at each step of the store sweep never loses a kept snapshot', () => {
  let dirs: TempDirs;
  let bucket: string;
  let kept: StoredSnapshot[];
  /** Packs of the template that hold no kept blob. */
  let dead: string[];
  let keptBlobs: Set<string>;
  const backendAt = (prefix: string) => createBackend(testS3Target(bucket, prefix));

  beforeAll(async () => {
    [dirs, bucket] = await Promise.all([tempDirs('prune-crash'), createTestBucket('prune-crash')]);
    const template = backendAt('template');
    const o = { packSize: 8 * 1024, spool: dirs.spool };
    const d = new Dataroot(join(dirs.root, 'dataroot'));
    const t0 = Date.now() - 10 * 3_600_000;
    // ~3 blobs a pack: 120 of s1's blobs make ~40 packs; most die, some keep one blob (repacked), some two.
    const a = await d.add(120, 2000);
    await snapshotDataroot(template, d, new Date(t0), o);
    await d.add(15, 2000);
    await snapshotDataroot(template, d, new Date(t0 + 3_600_000), o);
    await d.remove(a.filter((_, i) => i % 5 !== 0));
    await d.add(15, 2000);
    const s3 = await snapshotDataroot(template, d, new Date(t0 + 7_200_000), o);
    await d.add(6, 2000);
    const s4 = await snapshotDataroot(template, d, new Date(t0 + 10_800_000), o);
    kept = [s3, s4];
    keptBlobs = new Set(kept.flatMap((s) => [...s.files.values()]));
    dead = [...(await packContents(template))]
      .filter(([, blobs]) => ![...blobs].some((h) => keptBlobs.has(h)))
      .map(([id]) => id);
    expect(dead.length).toBeGreaterThanOrEqual(10);
    template.close?.();
  });
  afterAll(async () => {
    killLive();
    await dirs?.remove();
  });

  it.each(POINTS.map((p, i) => ({ ...p, n: i + 1 })))('kill $n: $name', async ({ n, at }) => {
    const backend = backendAt(`round-${n}`);
    const template = backendAt('template');
    await copyPrefix(template, backend);
    template.close?.();
    const s3 = inject('s3');
    const env = cliEnv('prune-crash', dirs, {
      ...KEEP_LAST_2_ENV,
      LOG_LEVEL: 'debug',
      AWS_S3_BUCKET_NAME: bucket,
      AWS_S3_PATH: `round-${n}`,
      AWS_ENDPOINT: s3Host(),
      AWS_ENDPOINT_PROTO: 'http',
      AWS_S3_PATH_STYLE: 'true',
      AWS_S3_CHECKSUMS: 'when_required',
      AWS_ACCESS_KEY_ID: s3.accessKeyId,
      AWS_SECRET_ACCESS_KEY: s3.secretAccessKey,
    });
    delete env.BACKUP_ARCHIVE;

    const run = startCli(['prune'], env, 120_000);
    await run.waitForLog(`sweep step ${n}`, at, 90_000);
    run.child.kill('SIGKILL');
    const killed = await run.exited;
    expect(killed.signal, 'the kill landed while prune ran').toBe('SIGKILL');

    // Right after the kill: every index file names a stored pack, every kept snapshot restores.
    const stored = new Set(await packIds(backend));
    for (const id of (await packContents(backend)).keys())
      expect(stored.has(id), `indexed pack ${id}`).toBe(true);
    for (const s of kept)
      expect(await restoreBlobs(backend, s, join(dirs.root, `out-${n}`))).toEqual(s.files);

    // A second prune finishes the job.
    const again = await runCli(['prune'], env, { timeoutMs: 120_000 });
    expect(again.code, again.stderr).toBe(0);
    const after = await packContents(backend);
    for (const [id, blobs] of after) {
      expect(dead, `dead pack ${id} left`).not.toContain(id);
      expect(
        [...blobs].some((h) => keptBlobs.has(h)),
        `pack ${id} holds a kept blob`,
      ).toBe(true);
    }
    for (const s of kept)
      expect(await restoreBlobs(backend, s, join(dirs.root, `out-${n}`))).toEqual(s.files);
    backend.close?.();
  });
});

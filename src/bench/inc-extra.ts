import { existsSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { generateIdentity, identityToRecipient } from 'age-encryption';
import { removeBlobs } from './blob-data.js';
import type { IncDataset } from './inc-datasets.js';
import { type IncManifest, interleave, type Sample, sidecarSample } from './inc-runs.js';
import { startCountingProxy } from './s3-count.js';
import type { BenchEnv } from './scenarios.js';

/**
 * Stop-mode downtime of a 2nd (nothing changed) backup with a big and a small dataroot beside the same
 * database: the window holds the listing of filedir/ and the rest of the volumes, so it should hardly grow
 * with the dataroot. Both stacks get their 1st backup untimed, then the 2nd runs alternate.
 */
export async function measureDowntime(
  env: BenchEnv,
  sets: { small: IncDataset; big: IncDataset },
  dir: string,
  repeat: number,
  log: (m: string) => void,
): Promise<Map<string, Sample[]>> {
  const archive = (d: IncDataset) => join(dir, `down-${d.ds.name}`);
  const run = (d: IncDataset) => sidecarSample(env, d.ds, ['backup'], { BACKUP_ARCHIVE: archive(d) });
  for (const d of [sets.small, sets.big]) {
    await rm(archive(d), { recursive: true, force: true });
    await mkdir(archive(d), { recursive: true });
    log(`${d.ds.name}: 1st backup (untimed)`);
    await run(d);
  }
  return interleave(
    repeat,
    () => [
      { key: 'down-small-2nd', run: () => run(sets.small) },
      { key: 'down-big-2nd', run: () => run(sets.big) },
    ],
    log,
  );
}

export interface S3Figures {
  run: '1st' | '2nd' | 'restore, 1% missing';
  /** BACKUP_STORE_FRAMES of the run (auto: frames, on an S3 target). */
  frames: 'auto' | 'off';
  /** Packs, lists and archives age-encrypted (to a recipient; the identity to restore). */
  age: boolean;
  requests: Record<string, number>;
  /** Bytes the run downloaded (response bodies). */
  downloaded: number;
  total: number;
  storedBytes: number;
  perGb: number;
  peakRssMb: number;
  ms: number;
}

/** Everything a snapshot stored: each volume's tarball, blob list and new packs. */
function storedBytes(m: IncManifest | undefined): number {
  return (m?.volumes ?? []).reduce(
    (a, v) => a + v.storedBytes + (v.blobs ? v.blobs.storedBytes + v.blobs.packBytes : 0),
    0,
  );
}

/**
 * To the S3 server through a counting proxy, with packs as frames (BACKUP_STORE_FRAMES=auto) and without:
 * a 1st and a 2nd incremental backup (requests per GB stored), then a restore into the dataroot lacking 1% of
 * its files (what it downloads: whole packs, or only the frames the missing files lie in). Then the same
 * 1st backup and restore with age encryption (frames then: the age chunks they lie in).
 */
export async function measureS3(
  env: BenchEnv,
  inc: IncDataset,
  log: (m: string) => void,
): Promise<S3Figures[]> {
  const port = Number(/:(\d+)$/.exec(env.s3Env.AWS_ENDPOINT ?? '')?.[1]);
  const proxy = await startCountingProxy(port);
  const out: S3Figures[] = [];
  try {
    const identity = await generateIdentity();
    const ageEnv = {
      BACKUP_AGE_RECIPIENTS: await identityToRecipient(identity),
      BACKUP_AGE_IDENTITY: identity,
    };
    const variants = [
      { frames: 'auto', age: false },
      { frames: 'off', age: false },
      { frames: 'auto', age: true },
      { frames: 'off', age: true },
    ] as const;
    for (const { frames, age } of variants) {
      const runs = frames === 'auto' && !age ? (['1st', '2nd'] as const) : (['1st'] as const);
      const tag = `${frames}${age ? '-age' : ''}`;
      const extra = {
        ...env.s3Env,
        AWS_ENDPOINT: `127.0.0.1:${proxy.port}`,
        AWS_S3_PATH: `inc-${inc.ds.name}-frames-${tag}`,
        BACKUP_STORE_FRAMES: frames,
        // Each setting's own state: the 1st run of each starts from nothing.
        BACKUP_STATE_DIR: join(env.work, `state-s3-${tag}`),
        ...(age ? ageEnv : {}),
      };
      await rm(extra.BACKUP_STATE_DIR, { recursive: true, force: true });
      const one = async (run: S3Figures['run'], args: string[]) => {
        proxy.reset();
        const s = await sidecarSample(env, inc.ds, args, extra);
        const requests = proxy.counts();
        const total = Object.values(requests).reduce((a, b) => a + b, 0);
        const stored = storedBytes(s.manifest);
        out.push({
          run,
          frames,
          age,
          requests,
          downloaded: proxy.received(),
          total,
          storedBytes: stored,
          perGb: total / (stored / 1e9),
          peakRssMb: s.peakRssMb ?? Number.NaN,
          ms: s.ms,
        });
        log(
          `  s3 (frames ${tag}) ${run}: ${total} requests, ${(stored / 1e6).toFixed(1)} MB stored, ${(proxy.received() / 1e6).toFixed(1)} MB downloaded`,
        );
      };
      for (const run of runs) await one(run, ['backup']);
      const root = inc.ds.stack.dirs.moodledata_data as string;
      const removed = removeBlobs(root, inc.dataroot.paths, 100);
      await one('restore, 1% missing', ['restore', 'latest', '--yes', '--no-safety-snapshot']);
      const back = inc.dataroot.paths.filter(
        (_, i) => i % 100 === 0 && existsSync(join(root, inc.dataroot.paths[i] as string)),
      );
      if (back.length !== removed)
        throw new Error(`S3 restore (frames ${tag}) brought back ${back.length} of ${removed} files`);
    }
  } finally {
    await proxy.stop();
  }
  return out;
}

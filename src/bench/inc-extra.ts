import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
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
  run: '1st' | '2nd';
  requests: Record<string, number>;
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

/** A 1st and a 2nd incremental backup to the S3 server through a counting proxy: requests per GB stored. */
export async function measureS3(
  env: BenchEnv,
  inc: IncDataset,
  log: (m: string) => void,
): Promise<S3Figures[]> {
  const port = Number(/:(\d+)$/.exec(env.s3Env.AWS_ENDPOINT ?? '')?.[1]);
  const proxy = await startCountingProxy(port);
  const out: S3Figures[] = [];
  try {
    for (const run of ['1st', '2nd'] as const) {
      proxy.reset();
      const s = await sidecarSample(env, inc.ds, ['backup'], {
        ...env.s3Env,
        AWS_ENDPOINT: `127.0.0.1:${proxy.port}`,
        AWS_S3_PATH: `inc-${inc.ds.name}`,
      });
      const requests = proxy.counts();
      const total = Object.values(requests).reduce((a, b) => a + b, 0);
      const stored = storedBytes(s.manifest);
      out.push({
        run,
        requests,
        total,
        storedBytes: stored,
        perGb: total / (stored / 1e9),
        peakRssMb: s.peakRssMb ?? Number.NaN,
        ms: s.ms,
      });
      log(`  s3 ${run}: ${total} requests for ${(stored / 1e6).toFixed(1)} MB stored`);
    }
  } finally {
    await proxy.stop();
  }
  return out;
}

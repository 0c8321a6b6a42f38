import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setImmediate } from 'node:timers/promises';
import type Docker from 'dockerode';
import { emptyDir } from './blob-data.js';
import { genDatabase } from './data.js';
import type { Dataset } from './datasets.js';
import { runSidecar } from './measure.js';
import { describeChildren } from './proc-memory.js';
import { type BenchEnv, sidecarEnv } from './scenarios.js';
import { createBenchStack, startBenchStack } from './stack.js';

/**
 * The 1M-blob memory bound end to end: a dataroot of `blobs` tiny SHA-1-named files is backed up once, then
 * the real CLI (the sidecar's Node flags) runs each command the bound covers, and its node process's peak
 * RSS (VmHWM) is reported, its children (tar, zstd, find) apart.
 */
export interface E2eFigure {
  command: string;
  peakRssMb: number;
  /** Highest sum of the children's peaks alive together, MB, and which children. */
  childRssMb: number;
  children: string;
  ms: number;
}

/**
 * `count` files `filedir/ab/cd/<sha1>` of a few bytes each, written as fast as the file system allows. The
 * event loop gets a turn every 4,096 files: two minutes blocked in a loop of sync writes let Docker close
 * the kept-alive API socket unseen, and the next request wrote into it (EPIPE, the memory bench's flake).
 */
export async function genTinyBlobs(root: string, count: number, seed = 'blob'): Promise<string[]> {
  const dirs = new Set<string>();
  const removable: string[] = [];
  for (let i = 0; i < count; i++) {
    const data = `${seed} ${i}\n`;
    const h = createHash('sha1').update(data).digest('hex');
    const dir = join(root, 'filedir', h.slice(0, 2), h.slice(2, 4));
    if (!dirs.has(dir)) {
      mkdirSync(dir, { recursive: true });
      dirs.add(dir);
    }
    writeFileSync(join(dir, h), data, { mode: 0o640 });
    // Every 100th: what the "1% deleted" step removes before the last backup (prune then has dead blobs).
    if (i % 100 === 0) removable.push(join(dir, h));
    if (i % 4096 === 4095) await setImmediate();
  }
  return removable;
}

interface MemoryCtx {
  docker: Docker;
  runId: string;
  image: string;
  env: BenchEnv;
  log: (m: string) => void;
}

/** A Compose-like project: a tiny database volume and a dataroot of `blobs` tiny blobs. */
export async function createMemoryDataset(
  g: MemoryCtx,
  blobs: number,
): Promise<{ ds: Dataset; removable: string[] }> {
  const project = `${g.runId}-mem`;
  const stack = await createBenchStack(
    g.docker,
    g.runId,
    project,
    g.image,
    ['mariadb_data', 'moodledata_data'],
    [
      { service: 'mariadb', mounts: { mariadb_data: '/bitnami/mariadb' } },
      { service: 'moodle', mounts: { moodledata_data: '/bitnami/moodledata' }, dependsOn: 'mariadb' },
    ],
  );
  const db = genDatabase(stack.dirs.mariadb_data as string, 1 << 20);
  const removable = await genTinyBlobs(stack.dirs.moodledata_data as string, blobs);
  await startBenchStack(g.docker, g.runId, project);
  return { ds: { name: 'mem-1m', stack, files: db.files + blobs, bytes: db.bytes + blobs * 16 }, removable };
}

/** One CLI command against the archive, measured. */
export async function measureCommand(
  env: BenchEnv,
  ds: Dataset,
  archive: string,
  command: string,
  args: string[],
  extra: Record<string, string> = {},
): Promise<E2eFigure> {
  const r = await runSidecar(
    env.cli,
    args,
    sidecarEnv(env, ds, { BACKUP_ARCHIVE: archive, ...extra }),
    3_600_000,
  );
  return {
    command,
    peakRssMb: r.peakRssMb,
    childRssMb: Math.round(r.memory.childrenKb / 1024),
    children: describeChildren(r.memory.byName),
    ms: Math.round(r.ms),
  };
}

/**
 * Backup (1st: everything new; 2nd: nothing changed), a 3rd after 1% of the blobs went, prune (keeping the
 * last two: mark over both lists, sweep), verify (closure) and --read-data, restore into the live dataroot
 * (every blob reused) and into emptied volumes (every blob fetched).
 */
export async function measureMemoryE2e(g: MemoryCtx, blobs: number): Promise<E2eFigure[]> {
  const dir = join(g.env.work, 'mem-e2e');
  const archive = join(dir, 'archive');
  await mkdir(archive, { recursive: true });
  const out: E2eFigure[] = [];
  const step = async (command: string, args: string[], extra?: Record<string, string>) => {
    const f = await measureCommand(g.env, ds, archive, command, [...args, '--json'], extra);
    g.log(
      `  memory ${command}: peak RSS ${f.peakRssMb} MB (children ${f.childRssMb}), ${(f.ms / 1000).toFixed(1)} s`,
    );
    out.push(f);
  };
  g.log(`memory: generating ${blobs} tiny blobs`);
  const { ds, removable } = await createMemoryDataset(g, blobs);
  try {
    await step('backup, 1st run', ['backup']);
    await step('backup, nothing changed', ['backup']);
    for (const f of removable) await rm(f, { force: true });
    await step('backup, 1% deleted', ['backup']);
    await step('prune (keep 2)', ['prune'], {
      BACKUP_KEEP_LAST: '2',
      BACKUP_KEEP_DAILY: '0',
      BACKUP_KEEP_WEEKLY: '0',
      BACKUP_KEEP_MONTHLY: '0',
      BACKUP_KEEP_YEARLY: '0',
    });
    await step('verify', ['verify']);
    await step('verify --read-data', ['verify', '--read-data']);
    await step('restore, every blob reused', ['restore', 'latest', '--yes', '--no-safety-snapshot']);
    for (const d of Object.values(ds.stack.dirs)) emptyDir(d);
    await step('restore into empty volumes', ['restore', 'latest', '--yes', '--no-safety-snapshot']);
    return out;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

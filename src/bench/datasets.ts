import type Docker from 'dockerode';
import { genBig, genCode, genDatabase, genMoodledata, genSmallFiles } from './data.js';
import { type BenchStack, createBenchStack, startBenchStack } from './stack.js';

const MB = 1024 * 1024;

export interface Sizes {
  /** The Moodle-like mix, MB. */
  mixMb: number;
  /** Number of small files. */
  smallFiles: number;
  /** The large volume for the memory check, MB. */
  bigMb: number;
  /** How often the fast rows are repeated (the best run counts: the machine is shared and noisy). */
  repeat: number;
}

function envNumber(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, got "${raw}"`);
  return n;
}

/** Sizes from BENCH_MIX_MB, BENCH_SMALL_FILES, BENCH_BIG_MB and BENCH_REPEAT (defaults: the sizes). */
export function sizesFromEnv(): Sizes {
  return {
    mixMb: envNumber('BENCH_MIX_MB', 1024),
    smallFiles: Math.round(envNumber('BENCH_SMALL_FILES', 50_000)),
    bigMb: envNumber('BENCH_BIG_MB', 10_240),
    repeat: Math.round(envNumber('BENCH_REPEAT', 2)),
  };
}

export interface Dataset {
  /** mix, small, big; the incremental group's sets are named inc-… */
  name: string;
  stack: BenchStack;
  files: number;
  bytes: number;
}

export const DATASETS = ['mix', 'small', 'big'] as const;
export type DatasetName = (typeof DATASETS)[number];

/**
 * One data set as a Compose-like project. Data is written straight into the volumes' host directories (the
 * bench runs as root on the Docker host, as the baselines must), then the containers start. Data sets are
 * made one at a time and removed after measuring, so none competes for page cache or disk with another.
 */
export async function createDataset(
  docker: Docker,
  runId: string,
  image: string,
  sizes: Sizes,
  name: DatasetName,
): Promise<Dataset> {
  const project = `${runId}-${name}`;
  let ds: Dataset;
  if (name === 'mix') {
    const stack = await createBenchStack(
      docker,
      runId,
      project,
      image,
      ['mariadb_data', 'moodle_data', 'moodledata_data'],
      [
        { service: 'mariadb', mounts: { mariadb_data: '/bitnami/mariadb' } },
        {
          service: 'moodle',
          mounts: { moodle_data: '/bitnami/moodle', moodledata_data: '/bitnami/moodledata' },
          dependsOn: 'mariadb',
        },
      ],
    );
    const bytes = sizes.mixMb * MB;
    const a = genDatabase(stack.dirs.mariadb_data as string, Math.round(bytes * 0.1));
    const b = genCode(stack.dirs.moodle_data as string, Math.round(bytes * 0.08));
    const c = genMoodledata(stack.dirs.moodledata_data as string, Math.round(bytes * 0.82));
    ds = { name, stack, files: a.files + b.files + c.files, bytes: a.bytes + b.bytes + c.bytes };
  } else if (name === 'small') {
    const stack = await createBenchStack(
      docker,
      runId,
      project,
      image,
      ['files'],
      [{ service: 'app', mounts: { files: '/data' } }],
    );
    const g = genSmallFiles(stack.dirs.files as string, sizes.smallFiles);
    ds = { name, stack, ...g };
  } else {
    const stack = await createBenchStack(
      docker,
      runId,
      project,
      image,
      ['moodledata_data'],
      [{ service: 'moodle', mounts: { moodledata_data: '/bitnami/moodledata' } }],
    );
    const g = genBig(stack.dirs.moodledata_data as string, sizes.bigMb * MB);
    ds = { name, stack, ...g };
  }
  await startBenchStack(docker, runId, project);
  return ds;
}

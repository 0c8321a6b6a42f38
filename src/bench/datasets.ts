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
  name: 'mix' | 'small' | 'big';
  stack: BenchStack;
  files: number;
  bytes: number;
}

/**
 * The three data sets as Compose-like projects. Data is written straight into the volumes' host
 * directories (the bench runs as root on the Docker host, as the baselines must), then the containers start.
 */
export async function createDatasets(
  docker: Docker,
  runId: string,
  image: string,
  sizes: Sizes,
): Promise<Dataset[]> {
  const mix = await createBenchStack(
    docker,
    runId,
    `${runId}-mix`,
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
  const a = genDatabase(mix.dirs.mariadb_data as string, Math.round(bytes * 0.1));
  const b = genCode(mix.dirs.moodle_data as string, Math.round(bytes * 0.08));
  const c = genMoodledata(mix.dirs.moodledata_data as string, Math.round(bytes * 0.82));

  const small = await createBenchStack(
    docker,
    runId,
    `${runId}-small`,
    image,
    ['files'],
    [{ service: 'app', mounts: { files: '/data' } }],
  );
  const s = genSmallFiles(small.dirs.files as string, sizes.smallFiles);

  const big = await createBenchStack(
    docker,
    runId,
    `${runId}-big`,
    image,
    ['moodledata_data'],
    [{ service: 'moodle', mounts: { moodledata_data: '/bitnami/moodledata' } }],
  );
  const g = genBig(big.dirs.moodledata_data as string, sizes.bigMb * MB);

  for (const st of [mix, small, big]) await startBenchStack(docker, runId, st.project);
  return [
    { name: 'mix', stack: mix, files: a.files + b.files + c.files, bytes: a.bytes + b.bytes + c.bytes },
    { name: 'small', stack: small, files: s.files, bytes: s.bytes },
    { name: 'big', stack: big, files: g.files, bytes: g.bytes },
  ];
}

import type Docker from 'dockerode';
import { type BlobDataroot, genBlobDataroot } from './blob-data.js';
import { genDatabase } from './data.js';
import type { Dataset } from './datasets.js';
import { createBenchStack, startBenchStack } from './stack.js';

const MB = 1024 * 1024;

/** The incremental group's data: the sizes by default, each overridable by BENCH_INC_*. */
export interface IncSizes {
  /** The main set: a dataroot of ≥ 1 GB in ≥ 20,000 SHA-1-named files. */
  mainMb: number;
  mainFiles: number;
  /** The many-files variant (200,000 files). */
  manyMb: number;
  manyFiles: number;
  /** Downtime in stop mode: a big and a small dataroot beside the same database. */
  downBigMb: number;
  downSmallMb: number;
  /** The database volume of every set. */
  dbMb: number;
  repeat: number;
  /** Which sets run: main, many, downtime, s3, memory; smoke (CI: main's sizes, 1st and 2nd run only). */
  sets: string[];
}

function num(name: string, fallback: number): number {
  const raw = process.env[name];
  const n = raw === undefined || raw === '' ? fallback : Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, got "${raw}"`);
  return n;
}

export const INC_SETS = ['main', 'many', 'downtime', 's3', 'memory', 'smoke'] as const;

export function incSizesFromEnv(): IncSizes {
  const sets = (process.env.BENCH_INC_SETS ?? 'main,many,downtime,s3,memory').split(',').filter(Boolean);
  for (const s of sets)
    if (!(INC_SETS as readonly string[]).includes(s)) throw new Error(`BENCH_INC_SETS: unknown set "${s}"`);
  return {
    mainMb: num('BENCH_INC_MB', 1100),
    mainFiles: Math.round(num('BENCH_INC_FILES', 20_000)),
    manyMb: num('BENCH_INC_MANY_MB', 1100),
    manyFiles: Math.round(num('BENCH_INC_MANY_FILES', 200_000)),
    downBigMb: num('BENCH_INC_DOWN_BIG_MB', 2048),
    downSmallMb: num('BENCH_INC_DOWN_SMALL_MB', 100),
    dbMb: num('BENCH_INC_DB_MB', 100),
    repeat: Math.round(num('BENCH_INC_REPEAT', 3)),
    sets,
  };
}

export interface IncDataset {
  ds: Dataset;
  dataroot: BlobDataroot;
  /** The dataroot's bytes alone (the targets' "of the dataroot"). */
  datarootBytes: number;
}

/** A Moodle-like stack (mariadb + moodle) whose dataroot holds real blobs; data written, then started. */
export async function createIncDataset(
  docker: Docker,
  runId: string,
  image: string,
  name: string,
  mb: number,
  files: number,
  dbMb: number,
): Promise<IncDataset> {
  const project = `${runId}-${name}`;
  const stack = await createBenchStack(
    docker,
    runId,
    project,
    image,
    ['mariadb_data', 'moodledata_data'],
    [
      // Like MariaDB, which writes its logs and control files at every shutdown: the volume changes each run.
      {
        service: 'mariadb',
        mounts: { mariadb_data: '/bitnami/mariadb' },
        onStop: 'date >> /bitnami/mariadb/shutdown.log',
      },
      { service: 'moodle', mounts: { moodledata_data: '/bitnami/moodledata' }, dependsOn: 'mariadb' },
    ],
  );
  const db = genDatabase(stack.dirs.mariadb_data as string, dbMb * MB);
  const dataroot = genBlobDataroot(stack.dirs.moodledata_data as string, mb * MB, files);
  await startBenchStack(docker, runId, project);
  const ds: Dataset = {
    name,
    stack,
    files: db.files + dataroot.gen.files,
    bytes: db.bytes + dataroot.gen.bytes,
  };
  return { ds, dataroot, datarootBytes: dataroot.gen.bytes };
}

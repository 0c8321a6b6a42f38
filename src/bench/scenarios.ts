import { execFileSync } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Dataset } from './datasets.js';
import { dockerdCpuS, runSidecar, timeShell } from './measure.js';
import { describeChildren, type MemoryPeaks } from './proc-memory.js';
import { type Row, round, row } from './report.js';
import type { EventRecorder } from './stack.js';

export interface BenchEnv {
  cli: string;
  work: string;
  helperImage: string;
  events: EventRecorder;
  s3Env: Record<string, string>;
  repeat: number;
}

/** The children's columns of a row (tar, zstd, …: every process of the pipeline but the main one). */
export function childColumns(m: MemoryPeaks | undefined): Pick<Row, 'childRssMb' | 'childRss'> {
  if (!m || m.childrenKb === 0) return {};
  return { childRssMb: Math.round(m.childrenKb / 1024), childRss: describeChildren(m.byName) };
}

/** Single-quotes a string for bash. */
export const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** One shell loop over the data set's volume directories, one output file per volume (as the sidecar). */
export function perVolume(ds: Dataset, body: (dir: string, name: string) => string): string {
  return Object.entries(ds.stack.dirs)
    .map(([name, dir]) => body(q(dir), name))
    .join('\n');
}

/** The fastest of `n` runs, with the CPU the Docker daemon spent during it. */
async function best<T extends { ms: number }>(
  n: number,
  f: () => Promise<T>,
): Promise<T & { dockerdS: number }> {
  let b: (T & { dockerdS: number }) | undefined;
  for (let i = 0; i < n; i++) {
    // Write back what earlier steps left dirty, so no run pays for the one before it.
    execFileSync('sync');
    const d0 = dockerdCpuS();
    const r = await f();
    const dockerdS = round(dockerdCpuS() - d0, 2);
    if (!b || r.ms < b.ms) b = { ...r, dockerdS };
  }
  return b as T & { dockerdS: number };
}

async function fresh(dir: string): Promise<string> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  return dir;
}

/** Bytes of the data sets' tar streams (what every pipeline reads), from the sidecar's own count. */
export interface Measured {
  rows: Row[];
  rawBytes: number;
  snapshot: string;
}

type Baseline =
  | 'tar|zstd'
  | 'tar -czf'
  | 'tar|gzip'
  | 'tar|pigz'
  | 'tar|node-zlib-gzip'
  | 'zstd -d|tar -x'
  | 'docker stop+start';

const NODE_GZIP = `node -e ${q(
  "require('stream').pipeline(process.stdin, require('zlib').createGzip({ level: 6 }), process.stdout, (e) => { if (e) { console.error(e); process.exit(1); } })",
)}`;

/** The baselines of the issue, on the volumes' host directories; outputs go to the bench work dir. */
export async function baseline(env: BenchEnv, ds: Dataset, which: Baseline, bytes: number): Promise<Row> {
  const out = join(env.work, `base-${ds.name}`);
  const zst = join(env.work, `base-${ds.name}-zst`);
  const script = {
    'tar|zstd': () =>
      perVolume(ds, (d, n) => `tar -C ${d} -c . | zstd -T0 -3 -q -c > ${q(join(zst, `${n}.zst`))}`),
    'tar -czf': () => perVolume(ds, (d, n) => `tar -C ${d} -czf ${q(join(out, `${n}.tgz`))} .`),
    'tar|gzip': () => perVolume(ds, (d, n) => `tar -C ${d} -c . | gzip -c > ${q(join(out, `${n}.gz`))}`),
    // Parallel gzip, as the sidecar's gzip codec (parallel members): the fair yardstick for it.
    'tar|pigz': () => perVolume(ds, (d, n) => `tar -C ${d} -c . | pigz -6 -c > ${q(join(out, `${n}.gz`))}`),
    'tar|node-zlib-gzip': () =>
      perVolume(ds, (d, n) => `tar -C ${d} -c . | ${NODE_GZIP} > ${q(join(out, `${n}.gz`))}`),
    'zstd -d|tar -x': () =>
      perVolume(
        ds,
        (_d, n) =>
          `mkdir -p ${q(join(out, n))} && zstd -d -q -c ${q(join(zst, `${n}.zst`))} | tar -C ${q(join(out, n))} -x --numeric-owner -p`,
      ),
    // What a staged restore's downtime cannot go below: stopping and starting the same containers in the
    // same order (dependents first), timed from outside as the restore's downtime is (Docker events).
    'docker stop+start': () => {
      const c = (s: string) => q(`${ds.stack.project}-${s}-1`);
      return `docker stop ${c('moodle')} >/dev/null && docker stop ${c('mariadb')} >/dev/null && docker start ${c('mariadb')} >/dev/null && docker start ${c('moodle')} >/dev/null`;
    },
  }[which]();
  // Best of the same number of runs as the sidecar's rows (BENCH_REPEAT), for every baseline.
  const r = await best(env.repeat, async () => {
    await fresh(out);
    if (which === 'tar|zstd') await fresh(zst);
    return timeShell(script);
  });
  const noOutput = which === 'zstd -d|tar -x' || which === 'docker stop+start';
  const outBytes = noOutput ? undefined : await duBytes(which === 'tar|zstd' ? zst : out);
  await rm(out, { recursive: true, force: true });
  return row({
    dataset: ds.name,
    key: `baseline:${which}`,
    label: which,
    kind: 'baseline',
    bytes,
    ms: r.ms,
    cpuS: r.cpuS,
    dockerdCpuS: r.dockerdS,
    ratio: outBytes === undefined ? undefined : round(outBytes / bytes, 3),
    ...childColumns(r.memory),
  });
}

async function duBytes(dir: string): Promise<number> {
  await timeShell(`du -sb ${q(dir)} | cut -f1 > ${q(`${dir}.size`)}`);
  const n = Number((await readFile(`${dir}.size`, 'utf8')).trim());
  await rm(`${dir}.size`, { force: true });
  return n;
}

export function sidecarEnv(env: BenchEnv, ds: Dataset, extra: Record<string, string>): NodeJS.ProcessEnv {
  const keep: NodeJS.ProcessEnv = {};
  // NODE_OPTIONS and glibc's malloc settings pass through, to measure the sidecar as the image runs it.
  for (const k of [
    'PATH',
    'HOME',
    'DOCKER_HOST',
    'NODE_EXTRA_CA_CERTS',
    'NODE_OPTIONS',
    'MALLOC_ARENA_MAX',
    'MALLOC_MMAP_THRESHOLD_',
  ])
    if (process.env[k]) keep[k] = process.env[k];
  return {
    ...keep,
    BACKUP_PROJECT: ds.stack.project,
    BACKUP_STATE_DIR: join(env.work, 'state'),
    BACKUP_SPOOL_DIR: join(env.work, 'spool'),
    BACKUP_HELPER_IMAGE: env.helperImage,
    BACKUP_STOP_CONTAINER_TIMEOUT: '30s',
    LOG_LEVEL: 'info',
    // The rows compare reading volumes with tar | zstd: an unchanged volume's archive would be linked instead
    // (that reuse is measured on its own, docs/design.md "Unchanged volumes").
    BACKUP_REUSE_ARCHIVES: 'off',
    ...extra,
  };
}

interface Manifest {
  id: string;
  volumes: { rawBytes: number; storedBytes: number }[];
  timings: { readMs: number; downtimeMs: number; uploadMs: number };
}

/** The sidecar's backup through the CLI; downtime from Docker events, upload checked to be after resume. */
export async function productBackup(
  env: BenchEnv,
  ds: Dataset,
  target: 'local' | 's3',
  codec: 'zstd' | 'gzip',
  repeat: number,
  /** Moodle's default dataroot excludes, through a config file: measures the tar filter's cost. */
  excludes?: Record<string, string[]>,
  /** 'docker' forces Docker's archive API (BACKUP_READ_PATH): the row to compare the mount path with. */
  readPath?: 'docker',
): Promise<Measured> {
  const tag = `${excludes ? '-excludes' : ''}${readPath ? `-${readPath}-path` : ''}`;
  const archive = join(env.work, `archive-${ds.name}-${codec}${tag}`);
  const targetEnv: Record<string, string> =
    target === 'local' ? { BACKUP_ARCHIVE: archive } : { ...env.s3Env };
  if (excludes) {
    const file = join(env.work, 'exclude.yml');
    const yaml = Object.entries(excludes).map(([v, rules]) => `  ${v}: [${rules.join(', ')}]`);
    await writeFile(file, `exclude:\n${yaml.join('\n')}\n`);
    targetEnv.BACKUP_CONFIG = file;
  }
  // Every repeat's snapshot stays: the fastest run's snapshot is the one restored afterwards.
  if (target === 'local') await fresh(archive);
  const r = await best(repeat, async () => {
    const run = await runSidecar(
      env.cli,
      ['backup', '--json'],
      sidecarEnv(env, ds, {
        ...targetEnv,
        // These rows measure whole-volume archives; the store has its own group (inc-group.ts). The mix's
        // dataroot has a filedir/, so `auto` would record it as incremental, which the archive API's
        // restore row cannot write back.
        BACKUP_INCREMENTAL: 'off',
        BACKUP_COMPRESSION: codec,
        ...(readPath ? { BACKUP_READ_PATH: readPath } : {}),
      }),
    );
    await sleep(300); // the last events arrive after the CLI has exited
    return {
      ...run,
      down: env.events.downtime(ds.stack.project, run.startedAtMs - 1000, run.endedAtMs + 1000),
    };
  });
  const m = JSON.parse(r.stdout) as Manifest;
  const raw = m.volumes.reduce((a, v) => a + v.rawBytes, 0);
  const stored = m.volumes.reduce((a, v) => a + v.storedBytes, 0);
  const notes: string[] = [];
  if (target === 's3') {
    const upload = r.logs.find((l) => l.step === 'upload');
    const uploadStart = Date.parse(String(upload?.time ?? '')) - Number(upload?.ms ?? 0);
    const after = r.down !== null && Number.isFinite(uploadStart) && uploadStart >= r.down.endMs - 50;
    notes.push(after ? 'upload after resume' : 'UPLOAD INSIDE DOWNTIME');
    notes.push(`upload ${(m.timings.uploadMs / 1000).toFixed(2)} s`);
  }
  return {
    rawBytes: raw,
    snapshot: m.id,
    rows: [
      row({
        dataset: ds.name,
        key: `product:backup-${target}-${codec}${tag}`,
        label: `sidecar backup → ${target === 'local' ? 'local' : 'S3 (s3rver)'}, ${codec}${
          excludes ? ', Moodle excludes' : ''
        }${readPath ? `, ${readPath} read path` : ''}`,
        kind: 'product',
        bytes: raw,
        ms: r.ms,
        cpuS: round(r.cpuS, 2),
        dockerdCpuS: r.dockerdS,
        ratio: round(stored / raw, 3),
        downtimeMs: r.down?.ms,
        pipelineMs: m.timings.readMs,
        peakRssMb: r.peakRssMb,
        ...childColumns(r.memory),
        note: notes.join('; ') || undefined,
        steps: timeline(r.logs, r.startedAtMs),
      }),
    ],
  };
}

/** The sidecar's restore of a local snapshot (verify first, then stop, extract, start); no safety snapshot. */
export async function productRestore(
  env: BenchEnv,
  ds: Dataset,
  snapshot: string,
  rawBytes: number,
  repeat: number,
  readPath?: 'docker',
): Promise<Row> {
  const archive = join(env.work, `archive-${ds.name}-zstd`);
  const r = await best(repeat, async () => {
    const run = await runSidecar(
      env.cli,
      ['restore', snapshot, '--yes', '--no-safety-snapshot', '--json'],
      sidecarEnv(env, ds, { BACKUP_ARCHIVE: archive, ...(readPath ? { BACKUP_READ_PATH: readPath } : {}) }),
    );
    await sleep(300);
    return {
      ...run,
      down: env.events.downtime(ds.stack.project, run.startedAtMs - 1000, run.endedAtMs + 1000),
    };
  });
  const res = JSON.parse(r.stdout) as { downtimeMs?: number };
  const total = (step: string, k: string) =>
    r.logs.filter((l) => l.step === step).reduce((a, l) => a + Number(l[k] ?? 0), 0);
  const verifyMs = total('verify', 'ms');
  return row({
    dataset: ds.name,
    key: `product:restore-local-zstd${readPath ? `-${readPath}-path` : ''}`,
    label: `sidecar restore ← local, zstd (verify + extract${readPath ? `, ${readPath} write path` : ''})`,
    kind: 'product',
    bytes: rawBytes,
    ms: r.ms,
    cpuS: round(r.cpuS, 2),
    dockerdCpuS: r.dockerdS,
    downtimeMs: r.down?.ms,
    pipelineMs: res.downtimeMs,
    peakRssMb: r.peakRssMb,
    ...childColumns(r.memory),
    verifyMs,
    emptyMs: total('restore', 'emptyMs'),
    extractMs: total('restore', 'extractMs'),
    note: `verify ${(verifyMs / 1000).toFixed(2)} s`,
    steps: timeline(r.logs, r.startedAtMs),
  });
}

/** A content fingerprint of the data set's volumes (names, bytes, numeric owners, modes, links). */
export async function fingerprint(env: BenchEnv, ds: Dataset): Promise<string> {
  const file = join(env.work, `fp-${ds.name}`);
  await timeShell(
    `{ ${perVolume(ds, (d) => `tar -C ${d} --sort=name --numeric-owner --mtime=@0 -c . | md5sum`)}; } > ${q(file)}`,
  );
  return readFile(file, 'utf8');
}

/** The sidecar's log lines as (seconds since start, step, volume, message): where the time went. */
export function timeline(logs: Record<string, unknown>[], startedAtMs: number): string[] {
  return logs.map((l) => {
    const t = ((Date.parse(String(l.time)) - startedAtMs) / 1000).toFixed(2);
    const ms = ['ms', 'emptyMs', 'extractMs']
      .filter((k) => l[k] !== undefined)
      .map((k) => `${k}=${String(l[k])}`);
    return `${t} ${String(l.step ?? '')} ${String(l.volume ?? '')} ${String(l.msg ?? '')} ${ms.join(' ')}`
      .replace(/ +/g, ' ')
      .trim();
  });
}
